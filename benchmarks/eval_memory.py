"""Peak extra memory and time of ranking 10k queries against 1M gallery tiles, both protocols.

Measured: the evaluation's own ranking code (:mod:`planetloc.eval.retrieval`) on synthetic
unit embeddings with random coordinates: ``rank_full`` (every query against the whole gallery,
scanned in blocks), and the m-nearest protocol as ``nearest_candidates`` (a k-d tree over the
gallery's coordinates) followed by ``rank_candidates``; metrics from ``summarise``. For each:
wall time and the peak memory beyond the inputs (queries, gallery, coordinates), sampled
every 0.2 s.

Target: less than 4 GB of memory beyond the inputs, whatever the number of queries. The
baseline in the same run is the size the full score matrix would need (what an unblocked
evaluation allocates: queries x gallery x 8 bytes of float64 scores).

    .venv/bin/python benchmarks/eval_memory.py [--queries 10000] [--gallery 1000000] [--dim 256]
    .venv/bin/python benchmarks/eval_memory.py --smoke --out /tmp/eval_memory.json

Prints a table and writes benchmarks/results/eval_memory.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from memwatch import GB, PeakMemory, machine
from planetloc.atomic import write_text
from planetloc.eval.metrics import nearest_candidates, summarise
from planetloc.eval.retrieval import Queries, Scorer, rank_candidates, rank_full

TARGET_GB = 4.0


def inputs(
    n_queries: int, n_gallery: int, dim: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit gallery vectors, queries near their true tiles, gallery coordinates, true rows."""
    rng = np.random.default_rng(seed)
    gallery = rng.standard_normal((n_gallery, dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    true = rng.integers(0, n_gallery, n_queries)
    queries = gallery[true] + 0.5 * rng.standard_normal((n_queries, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    gll = np.stack([rng.uniform(-60, 70, n_gallery), rng.uniform(-180, 180, n_gallery)], axis=1)
    return queries, gallery, gll, true


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="1000 queries x 50k tiles")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "eval_memory.json")
    )
    args = parser.parse_args()
    if args.smoke:
        args.queries, args.gallery = 1000, 50_000
    queries, gallery, gll, true = inputs(args.queries, args.gallery, args.dim)
    input_bytes = queries.nbytes + gallery.nbytes + gll.nbytes + true.nbytes
    scorer = Scorer(Queries(text=queries), gallery)
    results: dict = {
        "inputs_gb": round(input_bytes / GB, 3),
        "full_matrix_gb": round(args.queries * args.gallery * 8 / GB, 2),
    }
    keep = 10
    with PeakMemory() as mem:
        start = time.perf_counter()
        ranking = rank_full(scorer, true, np.arange(args.gallery), keep=keep)
        metrics = summarise(ranking.ranks, ranking.top[:, 0], true, gll)
        results["full_seconds"] = round(time.perf_counter() - start, 1)
    results["full_R@1"] = round(metrics["R@1"], 2)
    results["full_peak_extra_gb"] = mem.report()["anon_growth_gb"]
    name = f"m{args.m}"
    with PeakMemory() as mem:
        start = time.perf_counter()
        cand = nearest_candidates(gll[true], gll, args.m, true_rows=true)
        results[f"{name}_candidates_seconds"] = round(time.perf_counter() - start, 1)
        ranking = rank_candidates(scorer, true, cand, keep=keep)
        metrics = summarise(ranking.ranks, ranking.top[:, 0], true, gll)
        results[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
    results[f"{name}_R@1"] = round(metrics["R@1"], 2)
    results[f"{name}_peak_extra_gb"] = mem.report()["anon_growth_gb"]
    results["peak_extra_gb"] = max(results["full_peak_extra_gb"], results[f"{name}_peak_extra_gb"])
    results["target_gb"] = TARGET_GB
    results["meets_4gb_target"] = results["peak_extra_gb"] < TARGET_GB
    payload = {
        "benchmark": "eval_memory",
        "config": vars(args),
        "unit": "peak_extra_gb: growth of the anonymous resident memory over the inputs",
        "results": results,
        "machine": machine(),
    }
    write_text(args.out, json.dumps(payload, indent=1) + "\n")
    print(f"{'measure':26s} value")
    for key, value in results.items():
        print(f"{key:26s} {value}")
    return 0 if results["meets_4gb_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
