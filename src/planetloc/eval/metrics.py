"""Retrieval metrics on a query x gallery score matrix, computed in chunks of queries."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` highest scores of each row, best first (ties: lower index)."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def true_ranks(scores: np.ndarray, true_index: np.ndarray) -> np.ndarray:
    """0-based rank of each query's true gallery item (ties count against the query).

    ``scores`` is (Q, G), higher is better; ``true_index`` is (Q,) gallery indices.
    """
    scores = np.asarray(scores)
    true_index = np.asarray(true_index, dtype=np.int64)
    if scores.ndim != 2 or true_index.shape != (scores.shape[0],):
        raise ValueError(
            f"scores (Q, G) and true_index (Q,) disagree: {scores.shape}, {true_index.shape}"
        )
    if true_index.size and (true_index.min() < 0 or true_index.max() >= scores.shape[1]):
        raise ValueError("true_index holds indices outside the gallery")
    true_scores = scores[np.arange(scores.shape[0]), true_index]
    # Pessimistic ties: an equal score from another item ranks ahead of the true one.
    return (scores >= true_scores[:, None]).sum(1) - 1


def recall_at_k(ranks: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Percentage of queries whose true item is in the top k, for each k."""
    ranks = np.asarray(ranks)
    return {f"R@{k}": float(100.0 * np.mean(ranks < k)) if ranks.size else 0.0 for k in ks}


DISTANCES_M = (50, 100, 150)  # L@d: top-1 tile within d metres (CVG-Text)
WORLD_KM = (1, 25, 200, 750, 2500)  # accuracy within d km (GeoCLIP scales)
DEFAULT_BUDGET_BYTES = 1 << 30


def _haversine_rows(
    lat: np.ndarray, lon: np.ndarray, glat: np.ndarray, glon: np.ndarray
) -> np.ndarray:
    """(q, G) distances in metres, float32 to halve memory on large galleries."""
    from planetloc.geo.coords import EARTH_RADIUS_M

    p1 = np.radians(lat, dtype=np.float32)[:, None]
    p2 = np.radians(glat, dtype=np.float32)[None, :]
    dl = np.radians((glon[None, :] - lon[:, None]).astype(np.float32))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return (2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0, 1)))).astype(np.float32)


def _chunk_ranks(
    scores: np.ndarray,
    true_index: np.ndarray,
    qlatlon: np.ndarray,
    glatlon: np.ndarray,
    m: int | None,
    k_max: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks of the true items, the top-k_max gallery indices, for one chunk of queries."""
    rows = np.arange(scores.shape[0])
    if m is not None and m < scores.shape[1]:
        # CVG-Text protocol: only the m gallery tiles nearest the true location compete.
        dist = _haversine_rows(qlatlon[:, 0], qlatlon[:, 1], glatlon[:, 0], glatlon[:, 1])
        dist[rows, true_index] = -1.0  # the true tile always takes part
        cand = np.argpartition(dist, m - 1, axis=1)[:, :m]
        cand_scores = np.take_along_axis(scores, cand, axis=1)
    else:
        cand = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        cand_scores = scores
    true_scores = scores[rows, true_index]
    ranks = (cand_scores >= true_scores[:, None]).sum(1) - 1
    top = top_k(cand_scores, k_max)
    return ranks, np.take_along_axis(np.asarray(cand), top, axis=1), true_scores


def summarise(
    ranks: np.ndarray,
    top1: np.ndarray,
    qlatlon: np.ndarray,
    glatlon: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@k, L@d and geographic errors from true ranks and top-1 predictions."""
    from planetloc.geo.coords import haversine_m

    out: dict[str, float] = dict(recall_at_k(ranks, ks))
    err = haversine_m(qlatlon[:, 0], qlatlon[:, 1], glatlon[top1, 0], glatlon[top1, 1])
    for d in DISTANCES_M:
        out[f"L@{d}"] = float(100.0 * np.mean(err <= d))
    out["mean_error_km"] = float(err.mean() / 1000)
    out["median_error_km"] = float(np.median(err) / 1000)
    for d in WORLD_KM:
        out[f"acc@{d}km"] = float(100.0 * np.mean(err <= d * 1000))
    return out


def retrieval_metrics(
    scores: np.ndarray,
    true_index: np.ndarray,
    query_latlon: np.ndarray,
    gallery_latlon: np.ndarray,
    m: int | None = None,
    ks: tuple[int, ...] = (1, 5, 10),
) -> dict[str, float]:
    """Every retrieval and geographic metric from a (Q, G) score matrix, no model needed.

    ``m`` restricts each query to the m gallery tiles nearest its true location (the
    CVG-Text protocol); None ranks against the full gallery.
    """
    scores = np.asarray(scores, dtype=np.float32)
    qll, gll = np.asarray(query_latlon, float), np.asarray(gallery_latlon, float)
    ti = np.asarray(true_index, dtype=np.int64)
    true_ranks(scores, ti)  # shape and index checks
    ranks, top, _ = _chunk_ranks(scores, ti, qll, gll, m, max(ks))
    return summarise(ranks, top[:, 0], qll, gll, ks) | {
        "queries": len(ti),
        "gallery": scores.shape[1],
        "m": m,
    }


def embedding_metrics(
    queries: np.ndarray,
    gallery: np.ndarray,
    true_index: np.ndarray,
    query_latlon: np.ndarray,
    gallery_latlon: np.ndarray,
    *,
    m: int | None = None,
    ks: tuple[int, ...] = (1, 5, 10),
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    keep_top: int = 0,
    adjust: Callable[[np.ndarray, slice], np.ndarray] | None = None,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """:func:`retrieval_metrics` on embeddings, scored in query chunks within a memory budget.

    Never holds the (Q, G) matrix: each chunk's scores (and, with ``m``, distances) fit in
    ``budget_bytes``. ``adjust(scores, rows)`` may rewrite a chunk's scores (re-ranking).
    Returns the metrics, the true ranks and the top ``keep_top`` indices.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    g = np.ascontiguousarray(gallery, dtype=np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"query and gallery embeddings disagree: {q.shape} vs {g.shape}")
    ti = np.asarray(true_index, dtype=np.int64)
    qll, gll = np.asarray(query_latlon, float), np.asarray(gallery_latlon, float)
    per_row = g.shape[0] * 4 * (5 if m is not None else 3)  # scores and temporaries
    chunk = max(1, budget_bytes // per_row)
    k_max = max(max(ks), keep_top, 1)
    ranks = np.empty(len(q), dtype=np.int64)
    tops = np.empty((len(q), min(k_max, g.shape[0] if m is None else m)), dtype=np.int64)
    for start in range(0, len(q), chunk):
        sl = slice(start, start + chunk)
        scores = q[sl] @ g.T
        if adjust is not None:
            scores = adjust(scores, sl)
        r, t, _ = _chunk_ranks(scores, ti[sl], qll[sl], gll, m, k_max)
        ranks[sl] = r
        tops[sl] = t
    metrics = summarise(ranks, tops[:, 0], qll, gll, ks) | {
        "queries": len(q),
        "gallery": len(g),
        "m": m,
    }
    return metrics, ranks, tops[:, :keep_top]
