"""SynthCORE generation throughput (samples/s per core) and the size of sharded worlds.

1. Default world (target: at least 100 samples/s per core at 128 px, region maps, shadows,
   descriptions and PNG encoding included), with 1 and 2 workers, against the floor of only
   encoding and atomically writing the same number of 128 px PNG tiles.
2. Shard size on disk: one xl-style region (lazily computed map, gallery tiles anywhere)
   written as WebDataset shards with PNG tiles and with JPEG tiles; bytes per sample.
3. XL-style throughput and an estimate of the whole ``xl`` preset: the smallest and the
   largest xl regions generated with the preset's full per-region counts, one worker. A
   region's time is modelled as (per-region cost) + (cost per km2) x area, fitted on the two,
   and summed over all 225 regions' areas.
4. With ``--dense``: wall time of the whole ``dense`` preset with 2 workers.

    .venv/bin/python benchmarks/synth.py [--regions 4] [--per-region 300] [--xl 1] [--dense]

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
from planetloc.data.synth.config import PRESETS, preset_config, region_extent_m
from planetloc.data.synth.generate import SynthConfig, generate_region, generate_world
from planetloc.geo.regions import select_regions

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


def shard_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "shards").glob("*.tar"))


def default_world(args: argparse.Namespace, tmp: Path) -> dict:
    results: dict = {}
    cfg = SynthConfig(regions=args.regions, per_region=args.per_region, distractors=20)
    total = args.regions * (args.per_region + 20)
    for workers in (1, 2):
        start = time.perf_counter()
        generate_world(cfg, tmp / f"w{workers}", workers=workers)
        rate = total / (time.perf_counter() - start)
        results[f"generator_{workers}_workers_samples_per_s"] = round(rate, 1)
    floor_dir = tmp / "floor"
    floor_dir.mkdir()
    results["png_write_floor_samples_per_s"] = round(png_floor(total, cfg.size, floor_dir), 1)
    per_core = results["generator_1_workers_samples_per_s"]
    results["target_samples_per_s_per_core"] = TARGET_PER_CORE
    results["meets_target"] = per_core >= TARGET_PER_CORE
    results["generator_share_of_floor"] = round(
        per_core / results["png_write_floor_samples_per_s"], 3
    )
    return results


def shard_sizes(tmp: Path) -> dict:
    """Bytes per sample of the same xl-style region in PNG and in JPEG shards."""
    out = {}
    xl = PRESETS["xl"]
    region = select_regions(1)[0]
    for fmt in ("png", "jpg"):
        # Bytes per tile do not depend on the extent: the smallest keeps this part short.
        cfg = preset_config("xl", regions=1, distractors=1000, image_format=fmt, extent_max_m=None)
        folder = tmp / f"bytes-{fmt}"
        generate_region(region, cfg, folder, unseen=False)
        out[f"shard_bytes_per_sample_{fmt}"] = round(
            shard_bytes(folder) / (cfg.per_region + cfg.distractors)
        )
    out["shard_jpeg_quality"] = xl.jpeg_quality
    return out


def xl_estimate(tmp: Path, runs: int) -> dict:
    """Time the smallest and the largest xl region; extrapolate to the whole preset."""
    cfg = PRESETS["xl"]
    regions = select_regions(cfg.regions)
    areas = {r.slug: (region_extent_m(r, cfg) / 1000) ** 2 for r in regions}
    small = min(regions, key=lambda r: areas[r.slug])
    large = max(regions, key=lambda r: areas[r.slug])
    per_region = cfg.per_region + cfg.distractors
    seconds = {}
    for region in (small, large):
        best = float("inf")
        for run in range(runs):
            folder = tmp / f"xl-{region.slug}-{run}"
            start = time.perf_counter()
            generate_region(region, cfg, folder, unseen=False)
            best = min(best, time.perf_counter() - start)
        seconds[region.slug] = best
    slope = (seconds[large.slug] - seconds[small.slug]) / (areas[large.slug] - areas[small.slug])
    fixed = seconds[small.slug] - slope * areas[small.slug]
    core_s = sum(fixed + slope * areas[r.slug] for r in regions)
    samples = cfg.regions * per_region
    measured = sum(seconds.values())
    return {
        "xl_regions_timed": {
            r.slug: {
                "extent_km": round(areas[r.slug] ** 0.5, 2),
                "samples": per_region,
                "seconds": round(seconds[r.slug], 1),
            }
            for r in (small, large)
        },
        "xl_style_samples_per_s_per_core": round(2 * per_region / measured, 1),
        "xl_seconds_per_region_fixed": round(fixed, 2),
        "xl_seconds_per_km2": round(slope, 3),
        "xl_estimate_samples": samples,
        "xl_estimate_core_hours": round(core_s / 3600, 2),
        "xl_estimate_hours_on_2_cores": round(core_s / 3600 / 2, 2),
        "xl_estimate_samples_per_s_per_core": round(samples / core_s, 1),
    }


def dense_preset(tmp: Path) -> dict:
    cfg = PRESETS["dense"]
    start = time.perf_counter()
    generate_world(cfg, tmp / "dense", workers=2)
    seconds = time.perf_counter() - start
    samples = cfg.regions * (cfg.per_region + cfg.distractors)
    return {
        "dense_preset_samples": samples,
        "dense_preset_seconds_2_workers": round(seconds, 1),
        "dense_preset_shard_bytes_per_sample": round(shard_bytes(tmp / "dense") / samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--per-region", type=int, default=300)
    parser.add_argument(
        "--xl", type=int, default=1, help="runs per timed xl region (best is kept; 0 skips)"
    )
    parser.add_argument("--dense", action="store_true", help="also time the dense preset")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "synth.json"))
    args = parser.parse_args()
    results: dict = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        results.update(default_world(args, tmp))
        results.update(shard_sizes(tmp))
        if args.xl > 0:
            results.update(xl_estimate(tmp, args.xl))
        if args.dense:
            results.update(dense_preset(tmp))
    payload = {
        "benchmark": "synth",
        "config": {
            "regions": args.regions,
            "per_region": args.per_region,
            "size": 128,
            "distractors": 20,
            "chunk_px": SynthConfig().chunk_px,
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
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
