"""Dataset-builder throughput against the loopback providers, and what 1M samples would take.

The loopback server runs in its own process with a fixed added latency per request (network
round trips and a remote LVLM's generation time are what a real build waits on). The same
points are built at provider concurrency 1 (the baseline), 8 and 32, from an empty work
folder each time, and once more against a second server whose LVLM answers at once (this
machine's own capacity: HTTP, image decoding, stitching, encoding, writing). Reported:
samples/s end to end, speedup over concurrency 1, and the wall time for 1M samples given a
stated LVLM throughput (``--lvlm-rps``: accepted descriptions per second the user's serving
stack sustains; an assumption, not measured here).

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
from planetloc.builder.config import load_build_config
from planetloc.builder.engine import run_build

STAGES = ["streetview", "satellite", "describe"]


def start_server(port: int, latency: dict[str, float]) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "planetloc.builder.loopback",
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


def measure(url: str, conc: int, points: Path, work: Path, args: argparse.Namespace) -> dict:
    """Build the sampled points from scratch at one concurrency; one result row."""
    regions = args.regions.split(",")
    shutil.copytree(points, work)
    cfg = load_build_config(None, settings(url, conc, regions, args.per_region))
    started = time.perf_counter()
    report = run_build(cfg, work, [*STAGES, "write"])
    seconds = time.perf_counter() - started
    samples = report["dataset"]["samples"]
    return {
        "concurrency": conc,
        "samples": samples,
        "seconds": round(seconds, 2),
        "samples_per_s": round(samples / seconds, 2),
        "requests": {s: report["stages"][s]["http"]["requests"] for s in STAGES},
        "quarantined": report["quarantine"]["count"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", default="Tokyo,Lagos,Paris,Sydney")
    parser.add_argument("--per-region", type=int, default=24)
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
    levels = [int(c) for c in args.concurrency.split(",")]
    os.environ["BENCH_TOKEN"] = "bench-token"
    # Server B answers the LVLM at once: it measures what this machine itself can push.
    servers = [
        start_server(args.port, latency),
        start_server(args.port + 1, {**latency, "lvlm": 0.0}),
    ]
    urls = [f"http://127.0.0.1:{args.port + i}" for i in range(2)]
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Sample once and reuse the points, so every run builds the same samples.
            points = Path(tmp) / "points"
            base = load_build_config(None, settings(urls[0], 1, regions, args.per_region))
            run_build(base, points, ["sample"])
            # Warm-up (not reported): the loopback renders each tile once and then serves it
            # from memory, as a real tile service serves from its cache.
            for i, url in enumerate(urls):
                warm = Path(tmp) / f"warm-up-{i}"
                shutil.copytree(points, warm)
                cfg = load_build_config(None, settings(url, max(levels), regions, args.per_region))
                run_build(cfg, warm, ["streetview", "satellite"])
            for conc in levels:
                row = measure(urls[0], conc, points, Path(tmp) / f"c{conc}", args)
                results.append(row)
                print(
                    f"concurrency {conc:3d}: {row['samples']} samples in {row['seconds']:6.2f} s"
                    f" = {row['samples_per_s']:7.2f} samples/s"
                )
            capacity = measure(urls[1], max(levels), points, Path(tmp) / "capacity", args)
            print(
                f"instant LVLM, concurrency {max(levels)}: {capacity['samples_per_s']:.2f} "
                "samples/s (this machine's own capacity)"
            )
    finally:
        for server in servers:
            server.terminate()
            server.wait()
    baseline = results[0]["samples_per_s"]
    for row in results:
        row["speedup_vs_c1"] = round(row["samples_per_s"] / baseline, 2)
    # Samples are pipelined (imagery fetched while others wait for the LVLM), so a build
    # runs at the slower of this machine's capacity and the LVLM's throughput.
    rate = min(capacity["samples_per_s"], args.lvlm_rps)
    hours = 1_000_000 / rate / 3600
    bound = "the LVLM" if args.lvlm_rps <= capacity["samples_per_s"] else "this machine"
    extrapolation = {
        "lvlm_rps_assumed": args.lvlm_rps,
        "machine_capacity_samples_per_s": capacity["samples_per_s"],
        "hours_for_1M": round(hours, 1),
        "bound_by": bound,
    }
    print(
        f"1M samples: {hours:.1f} h with an LVLM at {args.lvlm_rps:g} descriptions/s "
        f"(bound by {bound}; capacity here {capacity['samples_per_s']:.1f} samples/s)"
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
        "capacity": capacity,
        "extrapolation": extrapolation,
    }
    write_text(args.out, json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
