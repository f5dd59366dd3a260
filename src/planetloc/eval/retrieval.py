"""Rank queries against a gallery of embeddings under a protocol, in bounded memory.

The gallery's embeddings are read in blocks (they may be a memory-mapped index store), the
queries in chunks, and nothing of size queries x gallery is ever held: the full protocol
scans the gallery block by block, counting the tiles that beat each true tile and keeping a
running top list; the m-nearest protocol scores only each query's m candidates. Scores are
float64. One re-ranking rule serves every protocol: the top ``rerank.top`` of the candidates
the protocol ranks are re-ordered by ``s + alpha * (s_color + s_struc + s_tex)``; the rest keep
their order below them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from planetloc.eval.metrics import MISSING, rank_in_candidates
from planetloc.index.search import exact_dot
from planetloc.ranking import check_finite, top_k

DEFAULT_BUDGET_BYTES = 1 << 30


@dataclass
class Queries:
    """What the queries are: text embeddings, street-view embeddings, or both (joint)."""

    text: np.ndarray | None = None  # (Q, E) unit vectors
    view: np.ndarray | None = None  # (Q, E) unit vectors
    joint: str = "projection"  # how a joint query scores: projection, mean or sum
    phys: dict[str, np.ndarray] | None = None  # text physical embeddings, for re-ranking

    def __len__(self) -> int:
        first = self.text if self.text is not None else self.view
        return 0 if first is None else len(first)

    def take(self, rows: np.ndarray) -> Queries:
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return Queries(
            text=pick(self.text),
            view=pick(self.view),
            joint=self.joint,
            phys=None if self.phys is None else {k: v[rows] for k, v in self.phys.items()},
        )


class Scorer:
    """float64 scores of queries against rows of a gallery embedding matrix."""

    def __init__(self, queries: Queries, gallery: Any) -> None:
        self.q = queries
        self.gallery = gallery  # (G, E) array or memmap

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """float64 gallery vectors of ``rows`` (read once, scored against many queries)."""
        return np.asarray(self.gallery[np.asarray(rows)], dtype=np.float64)

    def against(self, qs: slice, g: np.ndarray) -> np.ndarray:
        """(nq, n) scores of queries ``qs`` against gallery vectors ``g`` (n, E)."""
        text = None if self.q.text is None else np.asarray(self.q.text[qs], dtype=np.float64)
        view = None if self.q.view is None else np.asarray(self.q.view[qs], dtype=np.float64)
        if view is None:
            return text @ g.T
        if text is None:
            return view @ g.T
        from planetloc.model.planet import joint_scores

        return joint_scores(
            torch.from_numpy(text), torch.from_numpy(view), torch.from_numpy(g), self.q.joint
        ).numpy()

    def pairs(self, qs: slice, cand: np.ndarray) -> np.ndarray:
        """(nq, m) scores of query i against its own candidate rows ``cand[i]``."""
        if self.q.text is None or self.q.view is None:
            q = self.q.text if self.q.text is not None else self.q.view
            g = self.vectors(cand.ravel()).reshape(*cand.shape, -1)
            return np.einsum("qd,qmd->qm", np.asarray(q[qs], dtype=np.float64), g)
        out = np.empty(cand.shape, dtype=np.float64)
        for i, q in enumerate(range(qs.start, qs.stop)):
            out[i] = self.against(slice(q, q + 1), self.vectors(cand[i]))[0]
        return out

    def exact(self, q_idx: np.ndarray, g: np.ndarray) -> np.ndarray:
        """(n,) score of query ``q_idx[i]`` for gallery vector ``g[i]`` (from :meth:`vectors`),
        each pair computed on its own, the same way wherever its tile sits: equal tiles get
        bit-equal scores, which a BLAS block product (its kernel varies with a column's
        position) does not promise and the tie rule needs."""
        q_idx = np.asarray(q_idx, dtype=np.int64)
        if self.q.text is None or self.q.view is None:
            q = self.q.text if self.q.text is not None else self.q.view
            return exact_dot(g, q[q_idx])
        out = np.empty(len(q_idx))
        for i, q in enumerate(q_idx.tolist()):
            out[i] = self.against(slice(q, q + 1), g[i : i + 1])[0, 0]
        return out

    def true(self, qs: slice, true_rows: np.ndarray) -> np.ndarray:
        """(nq,) score of each query for its own true row (as :meth:`exact` computes it)."""
        return self.exact(np.arange(qs.start, qs.stop), self.vectors(true_rows))


@dataclass
class Rerank:
    """Physical re-ranking of the top candidates: ``s + alpha * sum_k s_k``."""

    alpha: float
    top: int
    query_phys: dict[str, np.ndarray]  # (Q, P) per branch
    gallery_phys: dict[str, Any]  # (G, P) per branch, array or memmap

    def apply(self, qs: slice, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Re-order each query's leading ``top`` rows (given best first); returns rows."""
        n = min(self.top, rows.shape[1])
        if n == 0 or self.alpha == 0:
            return rows
        head, head_scores = rows[:, :n], scores[:, :n]
        adjusted = head_scores.copy()
        for name, qp in self.query_phys.items():
            g = np.asarray(self.gallery_phys[name][head.ravel()], dtype=np.float64)
            g = g.reshape(*head.shape, -1)
            adjusted += self.alpha * np.einsum("qd,qkd->qk", np.asarray(qp[qs], np.float64), g)
        check_finite(adjusted, "re-ranked scores")
        # Ties keep the protocol's own order (position), so alpha = 0 changes nothing.
        new = np.argsort(-adjusted, axis=1, kind="stable")
        out = rows.copy()
        out[:, :n] = np.take_along_axis(head, new, axis=1)
        return out


@dataclass
class Ranking:
    """Where each query's true tile landed, and its best gallery rows."""

    ranks: np.ndarray  # (Q,) 0-based; MISSING when the true tile was not a candidate
    top: np.ndarray  # (Q, keep) gallery rows best first; -1 pads
    candidates: int  # how many tiles each query competed with (the most)


def _ranks_from(ordered: np.ndarray, true_rows: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Rank of the true row in ``ordered`` where present; else ``known``."""
    hit = ordered == true_rows[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1), known)


def rank_full(
    scorer: Scorer,
    true_rows: np.ndarray,
    gallery_rows: np.ndarray,
    *,
    keep: int,
    rerank: Rerank | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    progress: str | None = None,
) -> Ranking:
    """Rank every query against all ``gallery_rows`` (sorted index rows), exactly; with
    ``progress`` (a label), a bar counts the gallery tiles scored.

    The gallery is the outer loop: each block of it is read and converted once, then scored
    against every query chunk; a query keeps a count of the tiles beating its true tile and
    its best ``head`` so far (queries x head, a few MB for tens of thousands of queries).
    Block scores are BLAS products, which may differ from a pair's own score in the last
    bits: tiles within ``NEAR_TIE`` of a true tile's score, and the final top lists, are
    scored again pair by pair (:meth:`Scorer.exact`), so that copies of the true tile and
    exact ties fall on the side the tie rule puts them.
    """
    true_rows = np.asarray(true_rows, dtype=np.int64)
    rows = np.asarray(gallery_rows, dtype=np.int64)
    nq, ng = len(true_rows), len(rows)
    head = min(ng, max(keep, rerank.top if rerank else 0, 1))
    if nq == 0:
        return Ranking(np.zeros(0, np.int64), np.zeros((0, min(keep, head)), np.int64), ng)
    g_chunk, q_chunk = _blocks(budget_bytes, nq, ng, scorer.gallery.shape[1])
    true_scores = np.empty(nq)
    for q0 in range(0, nq, q_chunk):
        qs = slice(q0, min(nq, q0 + q_chunk))
        true_scores[qs] = scorer.true(qs, true_rows[qs])
    check_finite(true_scores)
    slack = NEAR_TIE * np.maximum(1.0, np.abs(true_scores))
    better = np.zeros(nq, dtype=np.int64)
    # Padding that any real score displaces (-inf sorts last); every slot is real at the end,
    # since the gallery holds at least ``head`` tiles.
    run_rows = np.full((nq, head), -1, dtype=np.int64)
    run_vals = np.full((nq, head), -np.inf)
    with tqdm(
        total=ng, desc=progress, unit="tile", unit_scale=True, disable=progress is None
    ) as bar:
        for g0 in range(0, ng, g_chunk):
            g_rows = rows[g0 : g0 + g_chunk]
            g = scorer.vectors(g_rows)
            for q0 in range(0, nq, q_chunk):
                qs = slice(q0, min(nq, q0 + q_chunk))
                s = scorer.against(qs, g)
                if not np.isfinite(s).all():
                    check_finite(s)
                lo = (true_scores[qs] - slack[qs])[:, None]
                hi = (true_scores[qs] + slack[qs])[:, None]
                above = np.count_nonzero(s > hi, axis=1)
                better[qs] += above
                # Few queries have near tiles in a block (their true tile, its copies): only
                # their rows are searched for them.
                nr = np.flatnonzero(np.count_nonzero(s >= lo, axis=1) > above)
                if len(nr):
                    sub = s[nr]
                    rr, c = np.nonzero((sub >= lo[nr]) & (sub <= hi[nr]))
                    better[qs] += _near_winners(
                        scorer, qs, nr[rr], g[c], g_rows[c], true_scores, true_rows
                    )
                vals, cand = _entrants(s, g_rows, run_vals[qs], head)
                vals = np.concatenate([run_vals[qs], vals], axis=1)
                cand = np.concatenate([run_rows[qs], cand], axis=1)
                best = np.lexsort((cand, -vals), axis=1)[:, :head]
                run_rows[qs] = np.take_along_axis(cand, best, axis=1)
                run_vals[qs] = np.take_along_axis(vals, best, axis=1)
            bar.update(len(g_rows))
    ranks = np.zeros(nq, dtype=np.int64)
    for q0 in range(0, nq, q_chunk):
        qs = slice(q0, min(nq, q0 + q_chunk))
        top, vals = _rescored(scorer, q0, run_rows[qs])
        ordered = rerank.apply(qs, top, vals) if rerank else top
        ranks[qs] = _ranks_from(ordered, true_rows[qs], better[qs])
        run_rows[qs] = ordered
    return Ranking(ranks=ranks, top=run_rows[:, :keep], candidates=ng)


# Block and pair scores of unit vectors differ by about 1e-15; tiles this close to a true
# tile's score (relative to scores above 1) are settled by its own pair score.
NEAR_TIE = 1e-9


def _near_winners(
    scorer: Scorer,
    qs: slice,
    r: np.ndarray,
    g: np.ndarray,
    g_rows: np.ndarray,
    true_scores: np.ndarray,
    true_rows: np.ndarray,
) -> np.ndarray:
    """Per query of the chunk ``qs``: how many of its near tiles (chunk-local query ``r[i]``,
    vector ``g[i]``, row ``g_rows[i]``) beat its true tile by pair scores; the true tile
    itself never does."""
    q = qs.start + r
    exact, t, t_row = scorer.exact(q, g), true_scores[q], true_rows[q]
    wins = ((exact > t) | ((exact == t) & (g_rows < t_row))) & (g_rows != t_row)
    return np.bincount(r, weights=wins, minlength=qs.stop - qs.start).astype(np.int64)


def _rescored(scorer: Scorer, q0: int, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top lists of the queries from ``q0`` re-ordered by pair scores (ties by row)."""
    nq, k = top.shape
    q = np.repeat(np.arange(q0, q0 + nq), k)
    vals = scorer.exact(q, scorer.vectors(top.ravel())).reshape(nq, k)
    order = np.lexsort((top, -vals), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(vals, order, axis=1)


# Past this many entrants per list place, selecting the block's top is cheaper than gathering.
_MAX_ENTRANTS = 8


def _entrants(
    s: np.ndarray, g_rows: np.ndarray, run_vals: np.ndarray, head: int
) -> tuple[np.ndarray, np.ndarray]:
    """(values, rows) of a score block that may enter the queries' running top lists.

    A tile scoring below a query's current ``head``-th best can never enter, so once the lists
    are full only the few at or above that value are gathered (padded with -inf and row -1);
    while they are filling, or when a query has many such tiles, the block's own top ``head``.
    """
    keep = s >= run_vals[:, -1:]
    counts = np.count_nonzero(keep, axis=1)
    if counts.max(initial=0) > _MAX_ENTRANTS * head:
        pick = top_k(s, head)
        return np.take_along_axis(s, pick, axis=1), g_rows[pick]
    r, c = np.divmod(np.flatnonzero(keep), s.shape[1])
    width = int(counts.max(initial=0))
    pos = np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)
    vals = np.full((len(s), width), -np.inf)
    rows = np.full((len(s), width), -1, dtype=np.int64)
    vals[r, pos] = s[r, c]
    rows[r, pos] = g_rows[c]
    return vals, rows


# Temporaries of a score block while it is counted and its best picked (the float64 scores,
# and, when its top is taken whole, their negation and partition), as float64 blocks.
_BLOCK_COPIES = 4


def _blocks(budget_bytes: int, nq: int, ng: int, dim: int) -> tuple[int, int]:
    """(gallery rows, queries) per block so that a block's work stays within the budget:
    a gallery block (float64) plus the temporaries of one score block."""
    q_chunk = max(1, min(nq, 512))
    per_row = 8 * (dim + _BLOCK_COPIES * q_chunk)
    g_chunk = max(1, min(ng, budget_bytes // per_row))
    return g_chunk, q_chunk


def rank_candidates(
    scorer: Scorer,
    true_rows: np.ndarray,
    cand: np.ndarray,
    *,
    keep: int,
    rerank: Rerank | None = None,
    protocol: str = "planetloc",
    chunk: int = 256,
) -> Ranking:
    """Rank every query among its own candidate rows ``cand`` (Q, m)."""
    true_rows = np.asarray(true_rows, dtype=np.int64)
    nq, m = cand.shape
    ranks = np.full(nq, MISSING, dtype=np.int64)
    top = np.full((nq, min(keep, m)), -1, dtype=np.int64)
    for q0 in range(0, nq, chunk):
        qs = slice(q0, min(nq, q0 + chunk))
        c = cand[qs]
        scores = scorer.pairs(qs, c)
        r, ordered = rank_in_candidates(scores, c, true_rows[qs], protocol=protocol)
        if rerank is not None:
            ordered_scores = np.take_along_axis(scores, _positions_of(c, ordered), axis=1)
            ordered = rerank.apply(qs, ordered, ordered_scores)
            r = _ranks_from(ordered, true_rows[qs], np.full(len(c), MISSING))
        ranks[qs] = r
        top[qs] = ordered[:, : top.shape[1]]
    return Ranking(ranks=ranks, top=top, candidates=m)


def _positions_of(cand: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Column of each ``ordered`` row within ``cand`` (both (Q, m), same rows per query)."""
    by_row = np.argsort(cand, axis=1, kind="stable")
    sorted_rows = np.take_along_axis(cand, by_row, axis=1)
    pos = np.stack([np.searchsorted(sorted_rows[i], ordered[i]) for i in range(len(cand))])
    return np.take_along_axis(by_row, pos, axis=1)
