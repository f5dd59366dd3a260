"""The search structure and the one search contract: rows and exact scores, any index kind.

Index kinds are FAISS factory strings (``Flat``, ``HNSW32,Flat``, ``IVF1024,PQ64x8,RFlat``,
or any other inner-product factory string), recorded in ``index.json`` with their search-time
parameters. Whatever the kind, :func:`search` returns exact float64 cosines computed from the
stored embeddings, ordered by :mod:`planetloc.ranking`'s rule: approximate kinds propose
candidates, nothing downstream rescores.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planetloc.errors import PlanetlocError
from planetloc.ranking import top_k

# Shorthands for the usual kinds; the factory string is what gets recorded.
KINDS = ("flat", "hnsw", "ivfpq")
EXACT_SUBSET = 200_000  # a prior allowing at most this many tiles is scored exactly


@dataclass
class SearchParams:
    """A FAISS factory string and the parameters that tune its search."""

    kind: str = "flat"  # flat, hnsw, ivfpq, or "factory" to use ``factory`` as given
    factory: str = ""  # filled in at build time from ``kind`` and the gallery size
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nprobe: int = 64
    refine: int = 8  # IVF-PQ candidates re-ranked exactly: refine * k

    def check(self) -> None:
        if self.kind not in (*KINDS, "factory"):
            raise PlanetlocError(f"index kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.kind == "factory" and not self.factory:
            raise PlanetlocError("a factory index kind needs a FAISS factory string")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe"):
            if getattr(self, name) < 1:
                raise PlanetlocError(f"index setting {name} must be at least 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchParams:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise PlanetlocError(f"unknown index setting {sorted(unknown)[0]!r}")
        params = cls(**data)
        params.check()
        return params


def factory_string(params: SearchParams, n: int, dim: int) -> str:
    """The FAISS factory string of ``params`` for a gallery of ``n`` ``dim``-d vectors."""
    if params.kind == "factory":
        return params.factory
    if params.kind == "flat":
        return "Flat"
    if params.kind == "hnsw":
        return f"HNSW{params.hnsw_m},Flat"
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants ~39 points per cell
    pq_m = max(1, dim // 4)
    while dim % pq_m:
        pq_m -= 1
    bits = min(8, max(1, int(math.log2(max(n, 2)) - 1)))  # each codebook needs 2**bits points
    refine = ",RFlat" if params.refine else ""
    return f"IVF{nlist},PQ{pq_m}x{bits}{refine}"


def factory_string_check(params: SearchParams, n: int, dim: int) -> None:
    """Refuse a factory string FAISS cannot parse (the empty index costs nothing to make)."""
    import faiss

    spec = factory_string(params, n, dim)
    try:
        faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[-120:]
        raise PlanetlocError(f"FAISS cannot build index {spec!r}: {detail}") from None


def _apply(index: Any, params: SearchParams) -> None:
    import faiss

    with contextlib.suppress(RuntimeError):  # not an HNSW index
        faiss.ParameterSpace().set_index_parameter(index, "efSearch", params.ef_search)
    with contextlib.suppress(RuntimeError):  # not an IVF index
        faiss.extract_index_ivf(index).nprobe = params.nprobe
    if isinstance(index, faiss.IndexRefine):
        index.k_factor = float(params.refine)


def tune_faiss() -> None:
    """Small query batches are ~6x faster with BLAS kicking in early (see DESIGN notes)."""
    import faiss

    faiss.cvar.distance_compute_blas_threshold = 20


def make_faiss(vectors: np.ndarray, params: SearchParams) -> tuple[Any, SearchParams]:
    """Build and fill the index ``params`` describe; returns it and the resolved params."""
    import faiss

    n, dim = vectors.shape
    spec = factory_string(params, n, dim)
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[-120:]
        raise PlanetlocError(f"FAISS cannot build index {spec!r}: {detail}") from None
    if hasattr(index, "hnsw"):
        index.hnsw.efConstruction = params.ef_construction
    if not index.is_trained:
        # k-means needs tens of points per cell, not the whole gallery.
        sample = np.sort(np.random.default_rng(0).permutation(n)[: min(n, 200_000)])
        index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    for start in range(0, n, 100_000):
        index.add(np.ascontiguousarray(vectors[start : start + 100_000], dtype=np.float32))
    resolved = SearchParams(**{**asdict(params), "factory": spec})
    _apply(index, resolved)
    return index, resolved


def open_faiss(path: Path, params: SearchParams, count: int) -> Any:
    """Read a FAISS file and set its search parameters; refuse one that does not fit."""
    import faiss

    tune_faiss()
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as err:
        raise PlanetlocError(f"{path}: damaged FAISS index ({str(err).splitlines()[0]})") from None
    if index.ntotal != count:
        raise PlanetlocError(f"{path}: holds {index.ntotal} vectors, index.json says {count}")
    _apply(index, params)
    return index


def exact_dot(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """float64 dot products of ``rows`` (..., d) with ``query`` (d or broadcastable).

    An elementwise product then a sum along the last axis, so every row is summed in the
    same order: equal rows get bit-equal scores wherever they sit, which a BLAS product
    (its kernel varies with a row's position in the block) does not promise, and the tie
    rule needs.
    """
    return (np.asarray(rows, np.float64) * np.asarray(query, np.float64)).sum(-1)


def _exact(
    gallery: Any, queries: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """float64 scores of each query's candidate ``rows`` (-1 = none); best ``k``, ties by row."""
    q = np.asarray(queries, dtype=np.float64)
    valid = rows >= 0
    safe = np.where(valid, rows, 0)
    g = np.asarray(gallery.embeddings[safe.ravel()], dtype=np.float64).reshape(*rows.shape, -1)
    scores = np.where(valid, exact_dot(g, q[:, None, :]), -np.inf)
    # Tie rule by row: sort candidates by row first (invalid last), then stably by score.
    by_row = np.argsort(np.where(valid, rows, np.iinfo(np.int64).max), axis=1, kind="stable")
    rows = np.take_along_axis(rows, by_row, axis=1)
    scores = np.take_along_axis(scores, by_row, axis=1)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = np.take_along_axis(rows, best, axis=1)
    scores = np.take_along_axis(scores, best, axis=1)
    return _pad(rows, scores, k)


# Rows scored per float32 block: bounds the memory of a pass whatever the gallery size.
BLOCK_BYTES = 256 * 2**20


def gallery_max_norm(gallery: Any) -> float:
    """The largest embedding norm of the gallery (computed once, in blocks)."""
    cached = getattr(gallery, "_max_norm", None)
    if cached is None:
        emb = gallery.embeddings
        step = max(1, BLOCK_BYTES // (8 * emb.shape[1]))
        cached = max(
            (
                float(np.sqrt((np.asarray(emb[s : s + step], np.float64) ** 2).sum(1).max()))
                for s in range(0, len(emb), step)
            ),
            default=0.0,
        )
        gallery._max_norm = cached
    return cached


def _float32_rows(gallery: Any, rows: np.ndarray | None, start: int, stop: int) -> np.ndarray:
    """Gallery vectors ``start:stop`` (of ``rows`` when given) as float32: FAISS's own copy
    when it is a flat index (no conversion), else the stored embeddings converted."""
    index = getattr(gallery, "faiss_index", None)
    if index is not None and gallery.search_params.factory == "Flat":
        import faiss

        xb = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(
            index.ntotal, index.d
        )
    else:
        xb = gallery.embeddings
    part = xb[start:stop] if rows is None else xb[rows[start:stop]]
    return np.asarray(part, dtype=np.float32)


def _two_pass(
    gallery: Any, q: np.ndarray, k: int, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` (float64 scores, ties by row) of ``allowed`` rows (all when None).

    A float32 BLAS pass ranks every row; rows within twice the float32 error bound of the
    k-th float32 score are then scored in float64. A row's float32 score is within
    e = gamma_d * |q| * max|x| of its exact score (gamma_d = d u / (1 - d u), u = 2**-24),
    so every row whose exact score reaches the exact k-th score is among those rescored.
    No float64 copy of the gallery is ever made.
    """
    n = len(gallery.embeddings) if allowed is None else len(allowed)
    d = q.shape[1]
    unit = d * 2.0**-24
    gamma = unit / (1 - unit)
    out_rows = np.full((len(q), k), -1, dtype=np.int64)
    out_scores = np.full((len(q), k), -np.inf)
    width = max(1, BLOCK_BYTES // (4 * d))
    blocks_q = max(1, BLOCK_BYTES // (4 * max(n, 1)))
    bound = 2 * gamma * gallery_max_norm(gallery)
    for q0 in range(0, len(q), blocks_q):
        qb = q[q0 : q0 + blocks_q]
        s32 = np.empty((len(qb), n), dtype=np.float32)
        for start in range(0, n, width):
            stop = min(n, start + width)
            s32[:, start:stop] = qb @ _float32_rows(gallery, allowed, start, stop).T
        kk = min(k, n)
        kth = -np.partition(-s32, kk - 1, axis=1)[:, kk - 1]
        for i in range(len(qb)):
            floor = kth[i] - bound * float(np.linalg.norm(qb[i]))
            cols = np.flatnonzero(s32[i] >= floor)
            rows = cols if allowed is None else allowed[cols]
            order_ = np.argsort(rows, kind="stable")  # ties by row: candidates in row order
            rows = rows[order_]
            exact = exact_dot(gallery.embeddings[rows], qb[i])
            best = top_k(exact[None], kk)[0]
            out_rows[q0 + i, :kk] = rows[best]
            out_scores[q0 + i, :kk] = exact[best]
    return _pad(out_rows, out_scores, k)


def _pad(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.where(np.isfinite(scores), rows, -1)
    pad = k - rows.shape[1]
    if pad > 0:
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return rows.astype(np.int64), scores.astype(np.float64)


def search(
    gallery: Any, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """See :meth:`planetloc.index.store.GalleryIndex.search`."""

    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != gallery.embeddings.shape[1]:
        raise PlanetlocError(
            f"queries of shape {q.shape} do not match {gallery.embeddings.shape[1]}-d embeddings"
        )
    if not np.isfinite(q).all():
        raise PlanetlocError("queries hold non-finite values")
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=np.int64)
        if len(allowed) == 0:
            return _pad(np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0)), k)
        if len(allowed) <= EXACT_SUBSET:
            # A small allowed set is scored exactly: faster than a filtered walk, and exact.
            return _two_pass(gallery, q, k, allowed)
    index = gallery.faiss_index
    exact_kind = gallery.search_params.factory == "Flat"
    if allowed is None and exact_kind:
        # BLAS passes over FAISS's own float32 vectors (a zero-copy view), then float64 for
        # the rows float32 cannot separate: exact at the k-th place too, for any batch size.
        return _two_pass(gallery, q, k, None)
    depth = min(len(gallery), k if exact_kind else 2 * k)
    if allowed is None:
        _, rows = index.search(q, depth)
    else:
        rows = _filtered(index, gallery.search_params, q, depth, allowed)
    return _exact(gallery, q, rows, k)


def _filtered(
    index: Any, params: SearchParams, q: np.ndarray, k: int, allowed: np.ndarray
) -> np.ndarray:
    import faiss

    selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
    if params.factory.startswith("HNSW"):
        sp = faiss.SearchParametersHNSW(sel=selector, efSearch=max(params.ef_search, 4 * k))
    elif params.factory.startswith("IVF"):
        sp = faiss.SearchParametersIVF(sel=selector, nprobe=params.nprobe)
        if params.refine:
            sp = faiss.IndexRefineSearchParameters(
                k_factor=float(params.refine), base_index_params=sp
            )
            sp.sel = selector
    else:
        sp = faiss.SearchParameters(sel=selector)
    _, rows = index.search(q, k, params=sp)
    return rows


def search_joint(
    gallery: Any,
    text: np.ndarray,
    view: np.ndarray,
    k: int,
    allowed: np.ndarray | None,
    how: str,
) -> tuple[np.ndarray, np.ndarray]:
    """One joint query: candidates from the text, the view and their mean, scored exactly.

    A joint score (the MAPS projection, say) is not an inner product with one vector, so the
    index proposes each query vector's best tiles and the joint score ranks their union.
    """
    import torch

    from planetloc.model.planet import joint_scores

    mean = text + view
    mean = mean / max(float(np.linalg.norm(mean)), 1e-12)
    depth = max(4 * k, 50)
    rows, _ = search(gallery, np.stack([text, view, mean]), depth, allowed)
    cand = np.unique(rows[rows >= 0])
    if not len(cand):
        return _pad(np.zeros((1, 0), np.int64), np.zeros((1, 0)), k)[0][0], np.full(k, -np.inf)
    g = np.asarray(gallery.embeddings[cand], dtype=np.float64)
    scores = joint_scores(
        torch.from_numpy(np.asarray(text, np.float64)[None]),
        torch.from_numpy(np.asarray(view, np.float64)[None]),
        torch.from_numpy(g),
        how,
    ).numpy()
    best = top_k(scores, k)  # cand is sorted, so column order is row order: ties by row
    out_rows, out_scores = _pad(cand[best], np.take_along_axis(scores, best, axis=1), k)
    return out_rows[0], out_scores[0]
