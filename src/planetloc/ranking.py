"""The one ordering rule for ranked gallery items, shared by evaluation and search.

Items are ordered by score, highest first; equal scores are ordered by gallery row, lower
first (a stable sort of the negated scores). The same order decides recall@K, the top-1 used
for geographic errors, the top-k a search returns and the candidates re-ranking touches, so a
query can never count as an R@1 miss while its top-1 is the true tile. Non-finite scores are
refused: a NaN compares false with everything and would otherwise rank as a perfect match.
"""

from __future__ import annotations

import numpy as np

from planetloc.errors import NonFiniteError


def check_finite(scores: np.ndarray, what: str = "scores") -> None:
    """Raise :class:`NonFiniteError` naming how many entries of ``scores`` are NaN or infinite."""
    bad = ~np.isfinite(scores)
    if bad.any():
        raise NonFiniteError(f"{what} hold {int(bad.sum())} non-finite values (NaN or infinity)")


def order(scores: np.ndarray) -> np.ndarray:
    """Column indices of every row, best first under the tie rule (a full stable sort)."""
    scores = np.asarray(scores)
    check_finite(scores)
    return np.argsort(-scores, axis=-1, kind="stable")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(Q, min(k, C)) column indices of the best ``k`` scores per row, best first, ties by column.

    Partial selection is exact under the tie rule: every column scoring above the k-th value is
    taken, then the lowest-numbered columns among those equal to it.
    """
    scores = np.atleast_2d(np.asarray(scores))
    check_finite(scores)
    q, c = scores.shape
    k = min(int(k), c)
    if k <= 0:
        return np.zeros((q, 0), dtype=np.int64)
    if k == c or c <= 64:
        return order(scores)[:, :k].astype(np.int64)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # the k-th best value per row
    above = scores > kth
    tied = scores == kth
    need = k - above.sum(1, keepdims=True)
    take = above | tied
    # Among equal scores, lower columns first: the first ``need`` tied columns of each row.
    # Only rows with more ties than places need the running count (rarely any: it is a full
    # pass over the block).
    crowded = np.flatnonzero(tied.sum(1) > need[:, 0])
    if len(crowded):
        sub = tied[crowded]
        take[crowded] = above[crowded] | (sub & (np.cumsum(sub, axis=1) <= need[crowded]))
    cols = np.nonzero(take)[1].reshape(q, k)  # row-major: columns ascending within each row
    picked = np.take_along_axis(scores, cols, axis=1)
    return np.take_along_axis(cols, np.argsort(-picked, axis=1, kind="stable"), axis=1).astype(
        np.int64
    )


def rank_of(scores: np.ndarray, true_col: np.ndarray) -> np.ndarray:
    """0-based position of column ``true_col[i]`` in row i's order under the tie rule."""
    scores = np.atleast_2d(np.asarray(scores))
    check_finite(scores)
    true_col = np.asarray(true_col, dtype=np.int64)
    rows = np.arange(scores.shape[0])
    true = scores[rows, true_col][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    before = (scores > true) | ((scores == true) & (cols < true_col[:, None]))
    return before.sum(1).astype(np.int64)
