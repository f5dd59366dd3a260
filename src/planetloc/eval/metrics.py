"""Retrieval metrics on a query x gallery score matrix, computed in chunks of queries."""

from __future__ import annotations

import numpy as np


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
