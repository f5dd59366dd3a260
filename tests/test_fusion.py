"""Late fusion of separately trained models: the fused inner product is the weighted score sum."""

from __future__ import annotations

import numpy as np
import pytest

from planetloc.errors import PlanetlocError
from planetloc.eval.fusion import late_fusion


def test_fused_inner_product_is_the_weighted_sum_of_scores() -> None:
    rng = np.random.default_rng(0)
    qa, ga = rng.normal(size=(5, 8)), rng.normal(size=(11, 8))
    qb, gb = rng.normal(size=(5, 3)), rng.normal(size=(11, 3))
    q, g = late_fusion([qa, qb], [ga, gb], [1.0, 0.25])
    assert q.shape == (5, 11) and g.shape == (11, 11)
    np.testing.assert_allclose(q @ g.T, qa @ ga.T + 0.25 * (qb @ gb.T), rtol=1e-12)
    # A zero weight leaves the other model's ranking exactly as it was.
    q0, g0 = late_fusion([qa, qb], [ga, gb], [1.0, 0.0])
    assert (np.argsort(-(q0 @ g0.T), axis=1) == np.argsort(-(qa @ ga.T), axis=1)).all()


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1.0, -0.5], "at least 0, got -0.5"),
        ([1.0, float("nan")], "finite"),
        ([0.0, 0.0], "at least one positive"),
        ([1.0], "one query matrix, gallery and weight per model"),
    ],
)
def test_bad_fusion_weights_are_refused(weights: list[float], message: str) -> None:
    q, g = np.ones((2, 4)), np.ones((3, 4))
    with pytest.raises(PlanetlocError, match=message):
        late_fusion([q, q], [g, g], weights)


def test_models_of_different_sets_are_refused() -> None:
    q, g = np.ones((2, 4)), np.ones((3, 4))
    with pytest.raises(PlanetlocError, match="model 1: 3 queries and 3 tiles"):
        late_fusion([q, np.ones((3, 4))], [g, g], [1.0, 1.0])
    with pytest.raises(PlanetlocError, match="query width 5 differs from its gallery's 4"):
        late_fusion([q, np.ones((2, 5))], [g, g], [1.0, 1.0])
