"""Retrieval and geographic metrics, and their full-matrix reference implementation.

Conventions, shared by every protocol (see :mod:`planetloc.ranking`):

* scores are used at the precision given (float64 from embeddings), never cast down;
* gallery items are ordered by score, highest first, ties by gallery row, lower first; the
  same order gives R@K and the top-1 tile that L@D and the errors measure;
* errors are great-circle distances from the *true tile* to the top-1 tile (0 when the
  top-1 is the true tile);
* a non-finite score is an error, never a match.

Protocols: ``full`` ranks each query against the whole gallery of its set. ``m`` nearest
(CVG-Text's protocol) ranks it among the m gallery tiles nearest its true tile: planetloc's
variant orders tiles by float64 haversine distance (IUGG mean radius), ties by gallery row,
and always keeps the true tile (it replaces the m-th when more than m tiles share the true
location); the ``cvg-text`` variant reproduces CVG-Text's ``cal_score`` exactly: its
haversine (atan2 form, R = 6371 km), a stable sort by distance, no forcing of the true tile
(a query whose tile falls outside the set is a miss), float32 similarities ranked by numpy's
default ``argsort``, and deviation 0 when the top-1 is the true image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from planetloc.geo.coords import haversine_m
from planetloc.ranking import check_finite, order, rank_of

DISTANCES_M = (50, 100, 150)  # L@d: top-1 tile within d metres (CVG-Text)
WORLD_KM = (1, 25, 200, 750, 2500)  # accuracy within d km (GeoCLIP scales)
KS = (1, 5, 10)
CVGTEXT_RADIUS_KM = 6371.0
MISSING = -1  # rank of a true tile that was not among a query's candidates


def recall_at_k(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """Percentage of queries whose true item ranks within the top k (a missing one never)."""
    ranks = np.asarray(ranks)
    hit = lambda k: (ranks >= 0) & (ranks < k)  # noqa: E731
    return {f"R@{k}": float(100.0 * np.mean(hit(k))) if ranks.size else 0.0 for k in ks}


def haversine_cvgtext_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """CVG-Text's ``haversine``: the atan2 form on a 6371 km sphere, float64, in km."""
    lat1, lon1, lat2, lon2 = (np.asarray(x, dtype=np.float64) for x in (lat1, lon1, lat2, lon2))
    dlat = np.radians(lat2 - lat1)
    dlon = np.radians(lon2 - lon1)
    a = (
        np.sin(dlat / 2) ** 2
        + np.cos(np.radians(lat1)) * np.cos(np.radians(lat2)) * np.sin(dlon / 2) ** 2
    )
    return CVGTEXT_RADIUS_KM * 2 * np.arctan2(np.sqrt(a), np.sqrt(1 - a))


def haversine_cvgtext_m(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """:func:`haversine_cvgtext_km` in metres (for the shared nearest-tile search)."""
    return haversine_cvgtext_km(lat1, lon1, lat2, lon2) * 1000.0


def summarise(
    ranks: np.ndarray,
    top1: np.ndarray,
    true_rows: np.ndarray,
    gallery_latlon: np.ndarray,
    *,
    ks: Sequence[int] = KS,
    protocol: str = "planetloc",
) -> dict[str, float]:
    """Recall@k, L@d and geographic errors from true ranks and top-1 gallery rows.

    ``top1`` of -1 (an empty candidate set) counts as a miss at every distance.
    """
    ranks = np.asarray(ranks)
    top1 = np.asarray(top1, dtype=np.int64)
    true_rows = np.asarray(true_rows, dtype=np.int64)
    gll = np.asarray(gallery_latlon, dtype=np.float64)
    out: dict[str, float] = dict(recall_at_k(ranks, ks))
    if not len(ranks):
        return out | {f"L@{d}": 0.0 for d in DISTANCES_M}
    safe = np.where(top1 >= 0, top1, true_rows)
    if protocol == "cvg-text":
        err = (
            haversine_cvgtext_km(gll[true_rows, 0], gll[true_rows, 1], gll[safe, 0], gll[safe, 1])
            * 1000.0
        )
    else:
        err = haversine_m(gll[true_rows, 0], gll[true_rows, 1], gll[safe, 0], gll[safe, 1])
    err = np.where(top1 == true_rows, 0.0, err)
    err = np.where(top1 >= 0, err, np.inf)
    for d in DISTANCES_M:
        out[f"L@{d}"] = float(100.0 * np.mean(err <= d))
    finite = err[np.isfinite(err)]
    out["mean_error_km"] = float(finite.mean() / 1000) if finite.size else float("nan")
    out["median_error_km"] = float(np.median(finite) / 1000) if finite.size else float("nan")
    for d in WORLD_KM:
        out[f"acc@{d}km"] = float(100.0 * np.mean(err <= d * 1000))
    return out


def nearest_candidates(
    true_latlon: np.ndarray,
    gallery_latlon: np.ndarray,
    m: int,
    *,
    true_rows: np.ndarray | None = None,
    protocol: str = "planetloc",
) -> np.ndarray:
    """(Q, min(m, G)) gallery rows each query competes with under the m-nearest protocol.

    Rows are ordered by distance from the true tile, ties by row. planetloc's protocol puts
    the true tile in place of the m-th when it is not among the m nearest; ``cvg-text``
    leaves the set as it is.
    """
    from planetloc.geo.nearest import NearestIndex

    tll = np.asarray(true_latlon, dtype=np.float64)
    gll = np.asarray(gallery_latlon, dtype=np.float64)
    distance = haversine_cvgtext_m if protocol == "cvg-text" else haversine_m
    cand, _ = NearestIndex(gll[:, 0], gll[:, 1], distance).nearest(tll[:, 0], tll[:, 1], m)
    if protocol != "cvg-text" and true_rows is not None and cand.shape[1]:
        true_rows = np.asarray(true_rows, dtype=np.int64)
        absent = ~(cand == true_rows[:, None]).any(axis=1)
        cand[absent, -1] = true_rows[absent]
    return cand


def rank_in_candidates(
    scores: np.ndarray,
    cand: np.ndarray,
    true_rows: np.ndarray,
    *,
    protocol: str = "planetloc",
) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of the true tiles and candidate orderings (as gallery rows) from (Q, m) scores.

    ``scores[i, j]`` is query i's score for gallery row ``cand[i, j]``.
    """
    scores = np.asarray(scores)
    check_finite(scores)
    if protocol == "cvg-text":
        # cal_score: float32 similarities, numpy's default argsort on their negation.
        pos = (
            np.stack([np.argsort(-row.astype(np.float32)) for row in scores])
            if len(scores)
            else cand
        )
    else:
        # Order by score, ties by gallery row: sort the candidates by row first, stably.
        by_row = np.argsort(cand, axis=1, kind="stable")
        s_row = np.take_along_axis(scores, by_row, axis=1)
        pos = np.take_along_axis(by_row, order(s_row), axis=1)
    ordered = np.take_along_axis(cand, pos, axis=1)
    hit = ordered == np.asarray(true_rows, dtype=np.int64)[:, None]
    ranks = np.where(hit.any(axis=1), hit.argmax(axis=1), MISSING)
    return ranks.astype(np.int64), ordered


def retrieval_metrics(
    scores: np.ndarray,
    true_index: np.ndarray,
    gallery_latlon: np.ndarray,
    *,
    m: int | None = None,
    ks: Sequence[int] = KS,
    protocol: str = "planetloc",
) -> dict[str, float]:
    """Every metric from a (Q, G) score matrix, no model needed (the reference implementation).

    ``m`` restricts each query to the m gallery tiles nearest its true tile; None ranks
    against the full gallery. ``protocol`` is ``planetloc`` or ``cvg-text`` (see the module
    docstring).
    """
    if protocol not in ("planetloc", "cvg-text"):
        raise ValueError(f"protocol must be 'planetloc' or 'cvg-text', got {protocol!r}")
    scores = np.asarray(scores)
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)
    true_index = np.asarray(true_index, dtype=np.int64)
    gll = np.asarray(gallery_latlon, dtype=np.float64)
    if (
        scores.ndim != 2
        or true_index.shape != (scores.shape[0],)
        or gll.shape != (scores.shape[1], 2)
    ):
        raise ValueError(
            f"scores (Q, G), true_index (Q,) and gallery_latlon (G, 2) disagree: "
            f"{scores.shape}, {true_index.shape}, {gll.shape}"
        )
    if true_index.size and (true_index.min() < 0 or true_index.max() >= scores.shape[1]):
        raise ValueError("true_index holds indices outside the gallery")
    check_finite(scores)
    if m is None:
        if protocol == "cvg-text":
            cand = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
            ranks, ordered = rank_in_candidates(scores, cand, true_index, protocol=protocol)
        else:
            ranks = rank_of(scores, true_index)
            ordered = order(scores)
    else:
        if m < 1:
            raise ValueError(f"m must be at least 1, got {m}")
        cand = nearest_candidates(gll[true_index], gll, m, true_rows=true_index, protocol=protocol)
        ranks, ordered = rank_in_candidates(
            np.take_along_axis(scores, cand, axis=1), cand, true_index, protocol=protocol
        )
    top1 = ordered[:, 0] if ordered.shape[1] else np.full(len(true_index), -1)
    return summarise(ranks, top1, true_index, gll, ks=ks, protocol=protocol) | {
        "queries": len(true_index),
        "gallery": scores.shape[1],
        "m": m,
    }
