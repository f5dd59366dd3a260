"""Evaluation sets, and the text-to-signature baseline, which beats chance on held-out texts."""

from __future__ import annotations

import numpy as np

from planetloc.baselines.evaluate import evaluate_text_to_signature, markdown_table
from planetloc.data.manifest import Manifest
from planetloc.eval.protocols import evaluation_sets, evaluation_table


def test_evaluation_sets_hold_each_query_tile_in_their_gallery(small_world: Manifest) -> None:
    table = evaluation_table(small_world.path)
    sets = {es.name: es for es in evaluation_sets(table)}
    assert {"world", "unseen"} <= set(sets)
    assert any(name.startswith("subset") for name in sets)
    for es in sets.values():
        assert np.isin(es.true_rows, es.gallery).all()
        assert np.array_equal(es.gallery, np.sort(es.gallery))  # gallery rows in manifest order
        assert len(es.gallery) > len(es.queries)  # distractors are included
    world = sets["world"]
    assert (table.split[world.queries] == "test").all()
    unseen_regions = set(table.region[sets["unseen"].gallery])
    assert not unseen_regions & set(table.region[world.gallery])
    assert len(world.queries) == len(small_world.by_split("test"))


def test_baseline_beats_chance_by_a_wide_margin(small_world: Manifest) -> None:
    report = evaluate_text_to_signature(str(small_world.path))
    world = report["sets"]["world"]
    # Margin: R@1 at least 8x chance and R@10 at least 3x chance (seeded world, deterministic fit).
    assert world["baseline"]["R@1"] >= 8 * world["chance"]["R@1"], world
    assert world["baseline"]["R@10"] >= 3 * world["chance"]["R@10"], world
    assert len(report["examples"]) == 3 and len(report["examples"][0]["top"]) == 5
    assert "| world |" in markdown_table(report)
