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

from planetloc.eval.metrics import MISSING, rank_in_candidates
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

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.gallery[np.asarray(rows)], dtype=np.float64)

    def _against(self, qs: slice, g: np.ndarray) -> np.ndarray:
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

    def block(self, qs: slice, rows: np.ndarray) -> np.ndarray:
        return self._against(qs, self._rows(rows))

    def pairs(self, qs: slice, cand: np.ndarray) -> np.ndarray:
        """(nq, m) scores of query i against its own candidate rows ``cand[i]``."""
        if self.q.text is None or self.q.view is None:
            q = self.q.text if self.q.text is not None else self.q.view
            g = self._rows(cand.ravel()).reshape(*cand.shape, -1)
            return np.einsum("qd,qmd->qm", np.asarray(q[qs], dtype=np.float64), g)
        out = np.empty(cand.shape, dtype=np.float64)
        for i, q in enumerate(range(qs.start, qs.stop)):
            out[i] = self._against(slice(q, q + 1), self._rows(cand[i]))[0]
        return out

    def true(self, qs: slice, true_rows: np.ndarray) -> np.ndarray:
        """(nq,) score of each query for its own true row."""
        return self.pairs(qs, np.asarray(true_rows, dtype=np.int64)[:, None])[:, 0]


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
) -> Ranking:
    """Rank every query against all ``gallery_rows`` (sorted index rows), exactly."""
    true_rows = np.asarray(true_rows, dtype=np.int64)
    rows = np.asarray(gallery_rows, dtype=np.int64)
    nq, ng = len(true_rows), len(rows)
    head = min(ng, max(keep, rerank.top if rerank else 0, 1))
    ranks = np.zeros(nq, dtype=np.int64)
    top = np.full((nq, head), -1, dtype=np.int64)
    dim = scorer.gallery.shape[1]
    g_chunk = max(1, min(ng, budget_bytes // (8 * (dim + 64 * 4))))
    q_chunk = max(1, min(nq, budget_bytes // (8 * 4 * max(g_chunk, 1))))
    for q0 in range(0, nq, q_chunk):
        qs = slice(q0, min(nq, q0 + q_chunk))
        t_rows = true_rows[qs]
        true_scores = scorer.true(qs, t_rows)
        check_finite(true_scores)
        better = np.zeros(len(t_rows), dtype=np.int64)
        run_rows = np.zeros((len(t_rows), 0), dtype=np.int64)
        run_vals = np.zeros((len(t_rows), 0))
        for g0 in range(0, ng, g_chunk):
            g_rows = rows[g0 : g0 + g_chunk]
            s = scorer.block(qs, g_rows)
            check_finite(s)
            t = true_scores[:, None]
            better += ((s > t) | ((s == t) & (g_rows[None, :] < t_rows[:, None]))).sum(1)
            pick = top_k(s, head)
            vals = np.concatenate([run_vals, np.take_along_axis(s, pick, axis=1)], axis=1)
            cand = np.concatenate([run_rows, g_rows[pick]], axis=1)
            best = np.lexsort((cand, -vals), axis=1)[:, :head]
            run_rows = np.take_along_axis(cand, best, axis=1)
            run_vals = np.take_along_axis(vals, best, axis=1)
        ordered = rerank.apply(qs, run_rows, run_vals) if rerank else run_rows
        ranks[qs] = _ranks_from(ordered, t_rows, better)
        top[qs] = ordered
    return Ranking(ranks=ranks, top=top[:, :keep], candidates=ng)


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
