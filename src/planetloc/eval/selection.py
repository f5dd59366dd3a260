"""Choosing settings on the validation split, never on test.

The physical re-ranking weight alpha is chosen after training by sweeping a grid on the
``val`` split (val queries against val tiles) and keeping the alpha with the best mean of
R@1, R@5 and R@10 (ties: the smaller alpha, so re-ranking is used only when it helps). The
run records the sweep and the winner; ``evaluate`` then applies it to test once. Nothing here
can read a test split: :func:`planetloc.eval.protocols.split_set` refuses test splits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from planetloc.errors import PlanetlocError
from planetloc.eval.evaluate import encode_gallery_in_memory, encode_queries, rank_set, set_metrics
from planetloc.eval.protocols import EvalSet
from planetloc.model.inference import Encoder
from planetloc.model.trunk_cache import TrunkCache

ALPHA_GRID = (0.0, 0.25, 0.5, 1.0, 2.0)
CRITERION = "mean of R@1, R@5, R@10 on val (full gallery)"


def val_criterion(metrics: Mapping[str, float], prefix: str = "") -> float:
    """The score every setting is chosen by: mean of R@1, R@5 and R@10 (keys ``prefix`` +
    ``R@k``, e.g. ``val_R@1`` in a training log)."""
    return float(np.mean([metrics[f"{prefix}R@{k}"] for k in (1, 5, 10)]))


def select_rerank_alpha(
    model: Any,
    val: EvalSet,
    *,
    device: str = "cpu",
    grid: tuple[float, ...] = ALPHA_GRID,
    trunk_cache: TrunkCache | None = None,
) -> dict[str, Any]:
    """Sweep ``grid`` on the validation set; return the sweep and the chosen alpha."""
    if val.name in ("test", "world", "unseen") or (val.table.split[val.queries] != "val").any():
        raise PlanetlocError("settings are chosen on the val split only")
    if not model.cfg.uses_text:
        return {"split": "val", "criterion": CRITERION, "sweep": [], "alpha": 0.0}
    encoder = Encoder(model, device=device, trunk_cache=trunk_cache)
    queries, _ = encode_queries(
        encoder, val.table, val.queries, query=model.cfg.query, joint_score=model.cfg.joint_score
    )
    gallery = encode_gallery_in_memory(encoder, val.table, val.gallery)
    sweep = []
    for alpha in grid:
        metrics = set_metrics(rank_set(queries, gallery, val, m=None, rerank_alpha=alpha), val)
        row = {"alpha": alpha} | {k: metrics[k] for k in ("R@1", "R@5", "R@10")}
        row["score"] = val_criterion(row)
        sweep.append(row)
    best = max(sweep, key=lambda r: (r["score"], -r["alpha"]))
    return {
        "split": "val",
        "queries": int(len(val.queries)),
        "criterion": CRITERION,
        "sweep": sweep,
        "alpha": best["alpha"],
    }
