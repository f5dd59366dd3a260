"""SynthCORE generation throughput (samples/s per core) against the PNG-writing floor.

Target (issue "Foundation"): at least 100 samples/s per core at 128 px, region rendering,
shadows, descriptions and PNG encoding included. The baseline measured in the same run is the
cost of only encoding and atomically writing the same number of 128 px PNG tiles.

    .venv/bin/python benchmarks/synth.py [--regions 4] [--per-region 300]

Prints a table and writes benchmarks/results/synth.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from planetloc.atomic import write_bytes, write_text
from planetloc.data.synth.generate import SynthConfig, generate_world

TARGET_PER_CORE = 100.0


def png_floor(count: int, size: int, out: Path) -> float:
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 255, size=(16, size, size, 3), dtype=np.uint8)
    start = time.perf_counter()
    for i in range(count):
        buf = io.BytesIO()
        Image.fromarray(tiles[i % 16]).save(buf, format="PNG", compress_level=1)
        write_bytes(out / f"{i}.png", buf.getvalue())
    return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--per-region", type=int, default=300)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "synth.json"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SynthConfig(regions=args.regions, per_region=args.per_region, distractors=20)
        total = args.regions * (args.per_region + 20)
        for workers in (1, 2):
            start = time.perf_counter()
            generate_world(cfg, Path(tmp) / f"w{workers}", workers=workers)
            rate = total / (time.perf_counter() - start)
            results[f"generator_{workers}_workers_samples_per_s"] = round(rate, 1)
        floor_dir = Path(tmp) / "floor"
        floor_dir.mkdir()
        results["png_write_floor_samples_per_s"] = round(png_floor(total, cfg.size, floor_dir), 1)
    per_core = results["generator_1_workers_samples_per_s"]
    results["target_samples_per_s_per_core"] = TARGET_PER_CORE
    results["meets_target"] = per_core >= TARGET_PER_CORE
    results["generator_share_of_floor"] = round(
        per_core / results["png_write_floor_samples_per_s"], 3
    )
    payload = {
        "benchmark": "synth",
        "config": {
            "regions": args.regions,
            "per_region": args.per_region,
            "size": 128,
            "distractors": 20,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(payload, indent=1) + "\n")
    for key, value in results.items():
        print(f"{key:40s} {value}")
    return 0 if results["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
