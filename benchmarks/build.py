"""Dataset-builder throughput against the loopback providers, and what 1M samples would take.

The loopback server runs in its own process with a fixed added latency per request (network
round trips and a remote LVLM's generation time are what a real build waits on). The same
points are built at provider concurrency 1 (the baseline), 8 and 32, from an empty work
folder each time. Reported: samples/s end to end and per stage, speedup over concurrency 1,
and the wall time for 1M samples given a stated LVLM throughput (``--lvlm-rps``: accepted
descriptions per second the user's serving stack sustains; the figure is an assumption, not
measured here).

    .venv/bin/python benchmarks/build.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from planetloc.atomic import write_text
from planetloc.build.config import load_build_config
from planetloc.build.engine import run_build

STAGES = ["streetview", "satellite", "describe"]


def start_server(port: int, latency: dict[str, float]) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "planetloc.build.loopback",
        "--port",
        str(port),
        "--token",
        "bench-token",
    ]
    for route, seconds in latency.items():
        cmd += ["--latency", f"{route}={seconds}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # the server prints its URL once it listens
    return proc


def settings(url: str, concurrency: int, regions: list[str], per_region: int) -> dict:
    return {
        "sample.regions": regions,
        "sample.per_region": per_region,
        "streetview.api_url": url + "/mapillary",
        "streetview.token_env": "BENCH_TOKEN",
        "satellite.url": url + "/xyz/{z}/{x}/{y}.png",
        "satellite.zoom": 18,
        "satellite.size_m": 200.0,
        "satellite.pixels": 384,
        "describe.base_url": url + "/v1",
        "describe.model": "loopback-lvlm",
        "describe.min_words": 30,
        "write.manifest": "manifest.parquet",
        **{f"{s}.max_concurrency": concurrency for s in STAGES},
        **{f"{s}.rate_per_s": 10_000.0 for s in STAGES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", default="Tokyo,Lagos,Paris,Sydney")
    parser.add_argument("--per-region", type=int, default=16)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--port", type=int, default=8977)
    parser.add_argument(
        "--latency",
        default="tiles=0.03,images=0.08,photo=0.05,lvlm=0.4",
        help="added seconds per request, per loopback route",
    )
    parser.add_argument(
        "--lvlm-rps",
        type=float,
        default=25.0,
        help="assumed LVLM throughput (descriptions/s) for the 1M estimate",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/build.json"))
    args = parser.parse_args()
    latency = {k: float(v) for k, v in (p.split("=") for p in args.latency.split(","))}
    regions = args.regions.split(",")
    os.environ["BENCH_TOKEN"] = "bench-token"
    server = start_server(args.port, latency)
    url = f"http://127.0.0.1:{args.port}"
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Sample once and reuse the points, so every run builds the same samples.
            points = Path(tmp) / "points"
            base = load_build_config(None, settings(url, 1, regions, args.per_region))
            run_build(base, points, ["sample"])
            levels = [int(c) for c in args.concurrency.split(",")]
            # Warm-up (not reported): the loopback renders each tile once and then serves it
            # from memory, as a real tile service serves from its cache.
            warm = Path(tmp) / "warm-up"
            shutil.copytree(points, warm)
            run_build(
                load_build_config(None, settings(url, max(levels), regions, args.per_region)),
                warm,
                ["streetview", "satellite"],
            )
            for conc in levels:
                work = Path(tmp) / f"run{len(results)}-c{conc}"
                shutil.copytree(points, work)
                cfg = load_build_config(None, settings(url, conc, regions, args.per_region))
                started = time.perf_counter()
                report = run_build(cfg, work, [*STAGES, "write"])
                seconds = time.perf_counter() - started
                samples = report["dataset"]["samples"]
                stages = {
                    s: {
                        "seconds": report["stages"][s]["seconds"],
                        "done": report["stages"][s]["counts"].get("done", 0),
                        "requests": report["stages"][s]["http"]["requests"],
                    }
                    for s in STAGES
                }
                row = {
                    "concurrency": conc,
                    "samples": samples,
                    "seconds": round(seconds, 2),
                    "samples_per_s": round(samples / seconds, 2),
                    "stages": stages,
                    "quarantined": report["quarantine"]["count"],
                }
                results.append(row)
                print(
                    f"concurrency {conc:3d}: {samples} samples in {seconds:6.2f} s = "
                    f"{row['samples_per_s']:7.2f} samples/s  "
                    + "  ".join(f"{s} {v['seconds']:.2f}s" for s, v in stages.items())
                )
    finally:
        server.terminate()
        server.wait()
    baseline = results[0]["samples_per_s"]
    for row in results:
        row["speedup_vs_c1"] = round(row["samples_per_s"] / baseline, 2)
    best = max(results, key=lambda r: r["samples_per_s"])
    imagery_s = sum(best["stages"][s]["seconds"] for s in ("streetview", "satellite"))
    imagery_rate = best["samples"] / imagery_s
    million = 1_000_000
    # Stages run one after another on a shard, so one machine needs imagery time + LVLM time;
    # with imagery spread over many machines the LVLM is the bound.
    one_machine_h = (million / imagery_rate + million / args.lvlm_rps) / 3600
    lvlm_bound_h = million / args.lvlm_rps / 3600
    extrapolation = {
        "lvlm_rps_assumed": args.lvlm_rps,
        "imagery_samples_per_s_one_machine": round(imagery_rate, 2),
        "hours_for_1M_one_machine": round(one_machine_h, 1),
        "hours_for_1M_lvlm_bound": round(lvlm_bound_h, 1),
    }
    print(
        f"1M samples: {one_machine_h:.1f} h on this machine's imagery rate "
        f"({imagery_rate:.1f}/s) + an LVLM at {args.lvlm_rps:g} descriptions/s; "
        f"{lvlm_bound_h:.1f} h when imagery is spread over machines (LVLM-bound)"
    )
    payload = {
        "benchmark": "build",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "latency_s": latency,
        "regions": regions,
        "per_region": args.per_region,
        "results": results,
        "extrapolation": extrapolation,
    }
    write_text(args.out, json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
