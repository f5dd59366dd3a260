"""Rebuilding an index over an unchanged gallery: shards checked by file stamps against shards
checked by hashing every image.

``evaluate`` rebuilds its gallery index on every call and ``index build`` into an existing
folder does the same; both re-encode only the shards whose inputs changed. This measures how
long deciding that takes when nothing changed, on the dense SynthCORE world's gallery (every
sample's tile, loose PNG files), with a trained checkpoint:

* ``first build``: encoding every tile (for scale);
* ``content hashes`` (baseline): every shard's key from its images' bytes, as before stat
  keys existed (forced here by treating every file as too recent to trust its stamp);
* ``stat keys``: each shard's files stat-ed, no image read.

Both rebuilds are repeated and reported as min / median. The files are in the page cache (they
were just read), so the content-hash figure is a lower bound: from a cold disk it reads the
whole gallery again.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/index_rebuild.py \
        [--checkpoint runs/bench/planet-l0.5-seed0] [--data runs/bench/world-dense]

Prints a table and writes benchmarks/results/index_rebuild.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from memwatch import machine
from planetloc.atomic import write_text
from planetloc.index import store
from planetloc.workflows.indexing import build_gallery_index


def _timed(args: argparse.Namespace) -> tuple[float, dict]:
    start = time.perf_counter()
    info = build_gallery_index(
        checkpoint=args.checkpoint,
        gallery=args.data,
        out=Path(args.work),
        tile_size_m=192.0,
        progress=False,
    )
    return time.perf_counter() - start, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/bench/planet-l0.5-seed0")
    parser.add_argument("--data", default="runs/bench/world-dense")
    parser.add_argument("--work", default="runs/bench/index-rebuild")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "index_rebuild.json")
    )
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    first_s, info = _timed(args)
    racy = store.RACY_SECONDS
    runs: dict[str, list[float]] = {"content hashes": [], "stat keys": []}
    reused: dict[str, int] = {}
    for _ in range(args.repeats):
        store.RACY_SECONDS = 1e12  # every file "too recent": shards checked by content
        seconds, rebuilt = _timed(args)
        runs["content hashes"].append(seconds)
        reused["content hashes"] = rebuilt["shards"]["reused"]
        store.RACY_SECONDS = racy
        _timed(args)  # records the stamps where a shard has none yet
        seconds, rebuilt = _timed(args)
        runs["stat keys"].append(seconds)
        reused["stat keys"] = rebuilt["shards"]["reused_by_stat"]
    rows = {
        name: {
            "min_s": round(min(values), 3),
            "median_s": round(statistics.median(values), 3),
            "shards_reused": reused[name],
        }
        for name, values in runs.items()
    }
    results = {
        "benchmark": "index_rebuild",
        "config": vars(args),
        "tiles": info["count"],
        "shards": info["shards"]["count"],
        "first_build_s": round(first_s, 1),
        "rebuild": rows,
        "speedup_median": round(
            rows["content hashes"]["median_s"] / max(rows["stat keys"]["median_s"], 1e-9), 1
        ),
        "machine": machine(),
    }
    print(f"{'rebuild of an unchanged gallery':34} {'min s':>8} {'median s':>9}")
    for name, row in rows.items():
        print(f"{name:34} {row['min_s']:8.3f} {row['median_s']:9.3f}")
    print(f"{info['count']} tiles in {info['shards']['count']} shards; first build {first_s:.1f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
