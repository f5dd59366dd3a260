"""Gallery search at scale: the index's search path per FAISS kind against numpy brute force.

Embeddings are real: a trained PLANET checkpoint encodes every SynthCORE tile and test query;
to reach 1M x 512 the tile embeddings are lifted to 512-d by a fixed orthonormal map (inner
products preserved) and replicated with small noise (random vectors would overstate how easy
approximate search is). Each kind is built with ``make_faiss(vectors, SearchParams(kind=...))``
and searched through ``GalleryIndex.search`` (the contract every caller uses: candidates from
FAISS, exact float64 scores from the stored embeddings), sweeping efSearch (HNSW) and nprobe
(IVF-PQ). Ground truth for recall@10 is an exact float64 top-10 computed here.

Targets: exact (flat) search >= 1.3x faster than numpy matmul + argpartition for batches of
100; an approximate kind >= 10x faster than exact with recall@10 >= 0.95. Baseline in the same
run: numpy brute force. Also reported: build time and memory per kind, and end-to-end
``Locator.locate(Query(text=...))`` latency (text encoding included) on a 100k flat gallery.

    .venv/bin/python benchmarks/index.py [--checkpoint runs/bench/planet-l0.5-seed0]
        [--data runs/bench/world]
    .venv/bin/python benchmarks/index.py --smoke --checkpoint RUN --data WORLD --out /tmp/i.json

Prints a table and writes benchmarks/results/index.json. The default checkpoint and world are
those ``benchmarks/synthcore.py`` trains and generates.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memwatch import GB, PeakMemory, machine
from planetloc.atomic import write_text
from planetloc.data.images import decode_rgb, read_image_bytes
from planetloc.data.table import SampleTable, read_table
from planetloc.index.locate import Locator, Query
from planetloc.index.search import SearchParams, make_faiss, tune_faiss
from planetloc.index.store import GalleryIndex, gallery_tile_size
from planetloc.model.checkpoint import load_model
from planetloc.model.inference import Embeddings, Encoder
from planetloc.ranking import top_k

K = 10
# The search-time knob of each kind: efSearch for HNSW, nprobe for IVF-PQ.
SWEEPS: dict[str, tuple[str | None, list[int | None]]] = {
    "flat": (None, [None]),
    "hnsw": ("efSearch", [64, 128, 256, 512]),
    "ivfpq": ("nprobe", [32, 64, 128]),
}


def replicate(
    base: np.ndarray, n: int, dim: int, noise: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors of ``dim`` dims: ``base`` rows lifted orthonormally, plus noise."""
    rng = np.random.default_rng(seed)
    lift = np.linalg.qr(rng.standard_normal((dim, base.shape[1])))[0].T.astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        idx = np.arange(start, min(n, start + 100_000)) % len(base)
        block = base[idx] @ lift
        block += noise * rng.standard_normal((len(idx), dim), dtype=np.float32) / np.sqrt(dim)
        out[start : start + len(idx)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out, lift


def exact_top(gallery: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact float64 top-``k`` rows per query (ties by row), the gallery read in blocks."""
    q = queries.astype(np.float64)
    best_rows = np.zeros((len(q), 0), dtype=np.int64)
    best_vals = np.zeros((len(q), 0))
    for start in range(0, len(gallery), 50_000):
        g = gallery[start : start + 50_000].astype(np.float64)
        s = q @ g.T
        pick = top_k(s, k)
        vals = np.concatenate([best_vals, np.take_along_axis(s, pick, axis=1)], axis=1)
        rows = np.concatenate([best_rows, pick + start], axis=1)
        keep = np.lexsort((rows, -vals), axis=1)[:, :k]
        best_rows = np.take_along_axis(rows, keep, axis=1)
        best_vals = np.take_along_axis(vals, keep, axis=1)
    return best_rows


def latency(fn: Any, queries: np.ndarray, batch: int, repeats: int) -> dict[str, float]:
    times = []
    for r in range(repeats):
        q = queries[(r * batch) % len(queries) :][:batch]
        if len(q) < batch:
            q = queries[:batch]
        start = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - start)
    return {
        "p50_ms": round(1000 * float(np.percentile(times, 50)), 2),
        "p95_ms": round(1000 * float(np.percentile(times, 95)), 2),
    }


def numpy_search(gallery: np.ndarray, k: int) -> Any:
    def run(q: np.ndarray) -> np.ndarray:
        scores = q @ gallery.T
        return np.argpartition(-scores, k - 1, axis=1)[:, :k]

    return run


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [
        len(set(a.tolist()) & set(b.tolist())) / truth.shape[1]
        for a, b in zip(found, truth, strict=True)
    ]
    return round(float(np.mean(hits)), 4)


def in_memory_index(
    embeddings: np.ndarray,
    faiss_index: Any,
    params: SearchParams,
    *,
    phys: dict[str, np.ndarray] | None = None,
    table: SampleTable | None = None,
    rows: np.ndarray | None = None,
    tile_size_m: float | None = None,
) -> GalleryIndex:
    """A :class:`GalleryIndex` over arrays in memory (what ``GalleryIndex.open`` returns for
    a folder), its metadata taken from ``table`` rows when given."""
    n = len(embeddings)
    if table is not None and rows is not None:
        meta = {
            "ids": np.asarray([f"{table.id[r]}#{i}" for i, r in enumerate(rows.tolist())]),
            "lat": table.lat[rows],
            "lon": table.lon[rows],
            "region": table.region[rows],
            "continent": table.continent[rows],
        }
    else:
        meta = {
            "ids": np.arange(n).astype(str),
            "lat": np.zeros(n),
            "lon": np.zeros(n),
            "region": np.full(n, "", dtype=object),
            "continent": np.full(n, "", dtype=object),
        }
    return GalleryIndex(
        folder=Path("."),
        info={"count": n, "embed_dim": embeddings.shape[1], "tile_size_m": tile_size_m},
        embeddings=embeddings,
        phys=phys or {},
        paths=np.full(n, "", dtype=object),
        faiss_index=faiss_index,
        search_params=params,
        **meta,
    )


def set_knob(index: Any, name: str | None, value: int | None) -> None:
    import faiss

    if name is not None:
        faiss.ParameterSpace().set_index_parameter(index, name, value)


def encode_world(model: Any, table: SampleTable) -> tuple[Embeddings, Embeddings, list[str]]:
    """Every tile of the world, and its test queries, through the model."""
    encoder = Encoder(model)
    size = model.cfg.image_size
    tiles = (
        decode_rgb(read_image_bytes(table.resolve(p)), size, source=str(p)) for p in table.sat_path
    )
    tile_emb = encoder.encode_tiles(tiles, total=len(table))
    texts = [str(t) for t in table.text[table.rows("test")]]
    return tile_emb, encoder.encode_texts(texts), texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/bench/planet-l0.5-seed0")
    parser.add_argument("--data", default="runs/bench/world")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--noise", type=float, default=0.35)
    parser.add_argument("--locate-size", type=int, default=100_000)
    parser.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"])
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=50, help="single-query timings per kind")
    parser.add_argument("--smoke", action="store_true", help="20k x 512, 10k locate gallery")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "index.json"))
    args = parser.parse_args()
    if args.smoke:
        args.size, args.locate_size, args.repeats = 20_000, 10_000, 5
    tune_faiss()  # as GalleryIndex.open does
    torch.set_grad_enabled(False)
    model = load_model(args.checkpoint)
    table = read_table(args.data, with_meta=True, meta_keys=("tile_m",))
    tile_emb, q_emb, texts = encode_world(model, table)
    gallery, lift = replicate(tile_emb.global_, args.size, args.dim, args.noise)
    queries = np.ascontiguousarray(q_emb.global_ @ lift, dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    n_recall = min(args.recall_queries, len(queries))
    truth = exact_top(gallery, queries[:n_recall], K)
    results: dict[str, Any] = {"numpy": {}}
    np_fn = numpy_search(gallery, K)
    results["numpy"]["1_query"] = latency(np_fn, queries, 1, max(5, args.repeats // 2))
    results["numpy"]["100_queries"] = latency(np_fn, queries, 100, 5)
    results["numpy"]["recall@10"] = recall(np_fn(queries[:n_recall]), truth)
    results["vectors_gb"] = round(gallery.nbytes / GB, 2)
    for kind in args.kinds:
        with PeakMemory() as mem:
            start = time.perf_counter()
            faiss_index, params = make_faiss(
                gallery, SearchParams(kind=kind, hnsw_m=32, ef_construction=80)
            )
            build = time.perf_counter() - start
        used = mem.report()
        row: dict[str, Any] = {
            "build_s": round(build, 1),
            "peak_rss_gb": used["peak_rss_gb"],
            "peak_rss_growth_gb": used["rss_growth_gb"],
            "params": asdict(params),
            "settings": {},
        }
        index = in_memory_index(gallery, faiss_index, params)
        knob, values = SWEEPS[kind]
        for value in values:
            set_knob(faiss_index, knob, value)
            if knob == "efSearch":
                index.search_params = replace(params, ef_search=value)
            elif knob == "nprobe":
                index.search_params = replace(params, nprobe=value)

            def fn(q: np.ndarray, index: GalleryIndex = index) -> np.ndarray:
                return index.search(q, K)[0]

            entry = {
                "1_query": latency(fn, queries, 1, args.repeats),
                "100_queries": latency(fn, queries, 100, max(3, args.repeats // 5)),
                "recall@10": recall(fn(queries[:n_recall]), truth),
            }
            row["settings"][str(value)] = entry
            print(kind, value, entry, flush=True)
        results[kind] = row
        del index, faiss_index
        gc.collect()
    summary: dict[str, Any] = {}
    flat = results.get("flat", {}).get("settings", {}).get("None")
    if flat:
        for n in ("1_query", "100_queries"):
            summary[f"flat_vs_numpy_{n}"] = round(
                results["numpy"][n]["p50_ms"] / flat[n]["p50_ms"], 2
            )
        for kind in ("hnsw", "ivfpq"):
            good = [
                (s, e)
                for s, e in results.get(kind, {}).get("settings", {}).items()
                if e["recall@10"] >= 0.95
            ]
            if good:
                setting, best = min(good, key=lambda se: se[1]["1_query"]["p50_ms"])
                summary[f"{kind}_fastest_with_recall_0.95"] = {
                    "setting": setting,
                    "recall@10": best["recall@10"],
                    "speedup_vs_flat_1_query": round(
                        flat["1_query"]["p50_ms"] / best["1_query"]["p50_ms"], 1
                    ),
                    "speedup_vs_flat_100_queries": round(
                        flat["100_queries"]["p50_ms"] / best["100_queries"]["p50_ms"], 1
                    ),
                }
        summary["meets_exact_target"] = summary["flat_vs_numpy_100_queries"] >= 1.3
        summary["meets_approximate_target"] = any(
            v["speedup_vs_flat_1_query"] >= 10
            for k, v in summary.items()
            if k.endswith("_recall_0.95")
        )
    del gallery
    gc.collect()
    # End to end: one description through a Locator over a flat float16 gallery, as the
    # store keeps it (text encoding, search, physics, estimate).
    n = args.locate_size
    small, _ = replicate(tile_emb.global_, n, tile_emb.global_.shape[1], args.noise, seed=1)
    reps = np.arange(n) % len(table)
    faiss_index, params = make_faiss(small, SearchParams())
    index = in_memory_index(
        small.astype(np.float16),
        faiss_index,
        params,
        phys={b: v[reps].astype(np.float16) for b, v in tile_emb.phys.items()},
        table=table,
        rows=reps,
        tile_size_m=gallery_tile_size(table, np.arange(len(table))),
    )
    locator = Locator(index, model)
    times = []
    for text in (texts * 2)[:30]:
        start = time.perf_counter()
        locator.locate(Query(text=text, k=5))
        times.append(time.perf_counter() - start)
    results[f"locate_{n // 1000}k"] = {
        "p50_ms": round(1000 * float(np.percentile(times, 50)), 1),
        "p95_ms": round(1000 * float(np.percentile(times, 95)), 1),
    }
    payload = {
        "benchmark": "index",
        "config": vars(args),
        "results": results,
        "summary": summary,
        "machine": machine(),
    }
    write_text(args.out, json.dumps(payload, indent=1) + "\n")
    print(f"\n{'search':28s} {'build s':>8s} {'1 query ms':>11s} {'100 q ms':>9s} {'R@10':>6s}")
    print(
        f"{'numpy brute force':28s} {'-':>8s} {results['numpy']['1_query']['p50_ms']:>11} "
        f"{results['numpy']['100_queries']['p50_ms']:>9} {results['numpy']['recall@10']:>6}"
    )
    for kind in args.kinds:
        for setting, e in results[kind]["settings"].items():
            label = kind if setting == "None" else f"{kind} {SWEEPS[kind][0]} {setting}"
            print(
                f"{label:28s} {results[kind]['build_s']:>8} {e['1_query']['p50_ms']:>11} "
                f"{e['100_queries']['p50_ms']:>9} {e['recall@10']:>6}"
            )
    print(f"locate over {n}: {results[f'locate_{n // 1000}k']}")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
