"""Evaluation sets of a manifest: which samples are queries and which tiles form the gallery.

* ``world``: every ``test`` query against all test tiles and distractors of the seen regions.
* ``subset1..4``: the same, restricted to one intercontinental continent group.
* ``unseen``: ``test_unseen`` queries (regions never trained on) against their regions' tiles.
* ``val`` (for training-time validation and model selection): ``val`` queries against the
  ``val`` tiles; it never touches a test split.

Every query's own tile is in its gallery; gallery-only distractors carry no text. Sets hold
row numbers of a :class:`~planetloc.data.table.SampleTable`, in manifest order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from planetloc.data.table import SampleTable, read_table
from planetloc.errors import PlanetlocError
from planetloc.geo.regions import CONTINENT_GROUPS

TEST_SPLITS = ("test", "test_unseen", "gallery")


@dataclass
class EvalSet:
    """Query rows, gallery rows (sorted), and each query's true tile among the gallery rows."""

    name: str
    table: SampleTable
    queries: np.ndarray
    gallery: np.ndarray

    @property
    def true_rows(self) -> np.ndarray:
        """Each query's own row: a sample pairs a description with its tile."""
        return self.queries


def evaluation_sets(table: SampleTable) -> list[EvalSet]:
    """The world, intercontinental and unseen-region sets that have at least one query."""
    split, region, continent = table.split, table.region, table.continent
    test = np.flatnonzero(split == "test")
    seen_regions = list(set(region[test].tolist()))
    seen_gallery = np.flatnonzero(
        (split == "test") | ((split == "gallery") & np.isin(region, seen_regions))
    )
    sets = [EvalSet("world", table, test, seen_gallery)]
    for group, members in CONTINENT_GROUPS.items():
        inside = np.isin(continent, list(members))
        sets.append(EvalSet(group, table, test[inside[test]], seen_gallery[inside[seen_gallery]]))
    unseen = np.flatnonzero(split == "test_unseen")
    unseen_regions = list(set(region[unseen].tolist()))
    unseen_gallery = np.flatnonzero(
        np.isin(region, unseen_regions) & np.isin(split, ["test_unseen", "gallery"])
    )
    sets.append(EvalSet("unseen", table, unseen, unseen_gallery))
    return [s for s in sets if len(s.queries)]


def split_set(data: str | os.PathLike[str], split: str = "val") -> EvalSet | None:
    """One split's samples as queries against their own tiles (None when it has under 2)."""
    if split in TEST_SPLITS:
        raise PlanetlocError(f"split {split!r} is for evaluation, not for choosing settings")
    try:
        table = read_table(data, splits=(split,))
    except PlanetlocError as err:
        if "no samples" in str(err):
            return None
        raise
    rows = np.arange(len(table))
    return EvalSet(split, table, rows, rows) if len(rows) >= 2 else None


def evaluation_table(data: str | os.PathLike[str]) -> SampleTable:
    """The rows evaluation reads: test queries, unseen-region queries and distractors, with
    the meta keys evaluation uses (the text's style, other phrasings, tile size)."""
    table = read_table(
        data, splits=TEST_SPLITS, with_meta=True, meta_keys=("alt_texts", "style", "tile_m")
    )
    if not len(table.rows("test", "test_unseen")):
        raise PlanetlocError(f"{table.path}: no test or test_unseen samples to evaluate")
    return table
