"""Peak extra memory and time of chunked scoring: 10k queries x 1M gallery tiles.

Target: the whole evaluation (ranks, top-k and geographic metrics under both protocols) in
less than 4 GB of memory beyond the embeddings themselves. The baseline in the same run is
the size the full score matrix would need (what an unchunked evaluation allocates).

    .venv/bin/python benchmarks/eval_memory.py [--queries 10000] [--gallery 1000000] [--dim 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from planetloc.atomic import write_text
from planetloc.eval.metrics import embedding_metrics


def rss_gb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--queries",
        type=int,
        default=10_000,
        help="peak memory does not depend on it: scoring is chunked",
    )
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "eval_memory.json")
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((args.gallery, args.dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    true = rng.integers(0, args.gallery, args.queries)
    queries = gallery[true] + 0.5 * rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    gll = np.stack(
        [rng.uniform(-60, 70, args.gallery), rng.uniform(-180, 180, args.gallery)], axis=1
    )
    qll = gll[true]
    base = rss_gb()
    results = {
        "inputs_gb": round(base, 2),
        "full_matrix_gb": round(args.queries * args.gallery * 4 / 1024**3, 2),
    }
    for name, m in (("full", None), (f"m{args.m}", args.m)):
        start = time.perf_counter()
        metrics, _, _ = embedding_metrics(queries, gallery, true, qll, gll, m=m)
        results[f"{name}_seconds"] = round(time.perf_counter() - start, 1)
        results[f"{name}_R@1"] = round(metrics["R@1"], 2)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    results["peak_extra_gb"] = round(peak - base, 2)
    results["meets_4gb_target"] = results["peak_extra_gb"] < 4.0
    payload = {
        "benchmark": "eval_memory",
        "config": vars(args),
        "results": results,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
    }
    write_text(args.out, json.dumps(payload, indent=1) + "\n")
    for key, value in results.items():
        print(f"{key:22s} {value}")
    return 0 if results["meets_4gb_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
