"""Evaluation metrics and protocols against hand-made and brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from planetloc.eval.metrics import embedding_metrics, retrieval_metrics
from planetloc.geo.coords import haversine_m, offset_latlon


def test_geographic_metrics_on_a_hand_made_matrix() -> None:
    # Three gallery tiles: at the origin, 80 m east, 30 km north.
    glat, glon = offset_latlon(0.0, 0.0, [0, 80, 0], [0, 0, 30_000])
    gallery = np.stack([glat, glon], axis=1)
    queries = gallery.copy()
    scores = np.array(
        [
            [0.9, 0.5, 0.1],  # right tile: error 0
            [0.8, 0.2, 0.1],  # picks tile 0, 80 m away from tile 1
            [0.1, 0.9, 0.2],  # picks tile 1, ~30 km away
        ]
    )
    m = retrieval_metrics(scores, np.array([0, 1, 2]), queries, gallery)
    assert m["R@1"] == pytest.approx(100 / 3)
    assert m["L@50"] == pytest.approx(100 / 3) and m["L@100"] == pytest.approx(200 / 3)
    assert m["acc@1km"] == pytest.approx(200 / 3) and m["acc@25km"] == pytest.approx(200 / 3)
    assert m["acc@200km"] == 100.0
    err = [0.0, 80.0, float(haversine_m(glat[2], glon[2], glat[1], glon[1]))]
    assert m["mean_error_km"] == pytest.approx(np.mean(err) / 1000, rel=1e-4)
    assert m["median_error_km"] == pytest.approx(0.08, rel=1e-3)


def _brute_force_m_nearest(scores, true_index, qll, gll, m):
    ranks, top1 = [], []
    for q in range(len(scores)):
        d = [haversine_m(qll[q, 0], qll[q, 1], gll[g, 0], gll[g, 1]) for g in range(len(gll))]
        d[true_index[q]] = -1
        cand = sorted(range(len(gll)), key=lambda g: d[g])[:m]
        ranks.append(sum(scores[q, g] >= scores[q, true_index[q]] for g in cand) - 1)
        top1.append(max(cand, key=lambda g: scores[q, g]))
    return np.array(ranks), np.array(top1)


@pytest.mark.parametrize("m", [1, 5, 17])
def test_m_nearest_protocol_matches_a_brute_force_reference(m: int) -> None:
    rng = np.random.default_rng(m)
    gll = np.stack([rng.uniform(40, 41, 60), rng.uniform(-74, -73, 60)], axis=1)
    true = rng.integers(0, 60, 25)
    qll = gll[true] + rng.normal(0, 1e-4, (25, 2))
    scores = rng.normal(size=(25, 60)).astype(np.float32)
    ranks, top1 = _brute_force_m_nearest(scores, true, qll, gll, m)
    got = retrieval_metrics(scores, true, qll, gll, m=m, ks=(1, 3))
    assert got["R@1"] == pytest.approx(100 * np.mean(ranks < 1))
    assert got["R@3"] == pytest.approx(100 * np.mean(ranks < 3))
    err = haversine_m(qll[:, 0], qll[:, 1], gll[top1, 0], gll[top1, 1])
    assert got["mean_error_km"] == pytest.approx(err.mean() / 1000, rel=1e-4)
    full = retrieval_metrics(scores, true, qll, gll, ks=(1, 3))
    assert got["R@1"] >= full["R@1"]


def test_chunked_scoring_equals_the_full_matrix_at_any_budget() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(37, 16)).astype(np.float32)
    g = rng.normal(size=(211, 16)).astype(np.float32)
    true = rng.integers(0, 211, 37)
    gll = np.stack([rng.uniform(-60, 60, 211), rng.uniform(-180, 180, 211)], axis=1)
    qll = gll[true]
    for m in (None, 10):
        reference = retrieval_metrics(q @ g.T, true, qll, gll, m=m)
        for budget in (1, 5_000, 1 << 30):  # 1 byte forces one query per chunk
            got, ranks, top = embedding_metrics(
                q, g, true, qll, gll, m=m, budget_bytes=budget, keep_top=5
            )
            assert got == reference
            assert ranks.shape == (37,) and top.shape == (37, 5)


def test_mismatched_embeddings_are_refused() -> None:
    with pytest.raises(ValueError, match="disagree"):
        embedding_metrics(
            np.zeros((2, 4)), np.zeros((3, 5)), np.zeros(2), np.zeros((2, 2)), np.zeros((3, 2))
        )
