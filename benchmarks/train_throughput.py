"""Training throughput of the embedded default on CPU: one process vs 2-process DDP (gloo).

The baseline measured in the same run is one process using both cores. The DDP run starts
two torchrun workers with one thread each on the same global batch. Throughput is the
median samples/s over the logged intervals after the first (data preparation excluded).

    .venv/bin/python benchmarks/train_throughput.py [--steps 40] [--work runs/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from planetloc.atomic import write_text
from planetloc.data.synth.generate import SynthConfig, generate_world


def run(cmd: list[str], env: dict[str, str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in rows if "samples_per_s" in r][1:]
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--work", default="runs/bench")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "train_throughput.json")
    )
    args = parser.parse_args()
    work = Path(args.work)
    world = generate_world(SynthConfig(), work / "world", workers=2).parent
    common = [
        "train",
        "--data",
        str(world),
        "--method",
        "planet",
        "--set",
        f"steps={args.steps}",
        "--set",
        "log_every=5",
        "--set",
        "eval_every=0",
        "--set",
        "save_every=100000",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cli = [sys.executable, "-m", "planetloc.cli"]
    results = {
        "one_process_2_threads": run(
            [*cli, *common, "--out", str(work / "tp1")],
            env | {"OMP_NUM_THREADS": "2"},
            work / "tp1",
        ),
        "ddp_2_processes_1_thread_each": run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node=2",
                "-m",
                "planetloc.cli",
                *common,
                "--out",
                str(work / "tp2"),
            ],
            env | {"OMP_NUM_THREADS": "1"},
            work / "tp2",
        ),
    }
    results["ddp_speedup"] = (
        results["ddp_2_processes_1_thread_each"] / results["one_process_2_threads"]
    )
    payload = {
        "benchmark": "train_throughput",
        "config": {
            "method": "planet",
            "backbone": "minilm-cnn",
            "batch_size": 64,
            "steps": args.steps,
        },
        "unit": "samples/s (global batch)",
        "results": {k: round(v, 2) for k, v in results.items()},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(payload, indent=1) + "\n")
    for key, value in payload["results"].items():
        print(f"{key:34s} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
