"""Evaluation sets of a manifest: which samples are queries and which tiles form the gallery.

* ``world``: every ``test`` query against all test tiles and distractors of the seen regions.
* ``subset1..4``: the same, restricted to one intercontinental continent group.
* ``unseen``: ``test_unseen`` queries (regions never trained on) against their regions' tiles.

Every query's own tile is in its gallery; gallery-only distractors carry no text.
"""

from __future__ import annotations

from dataclasses import dataclass

from planetloc.data.schema import Sample
from planetloc.geo.regions import CONTINENT_GROUPS


@dataclass
class EvalSet:
    name: str
    queries: list[Sample]
    gallery: list[Sample]

    @property
    def true_index(self) -> list[int]:
        position = {s.id: i for i, s in enumerate(self.gallery)}
        return [position[q.id] for q in self.queries]


def evaluation_sets(samples: list[Sample]) -> list[EvalSet]:
    """The world, intercontinental and unseen-region sets that have at least one query."""
    test = [s for s in samples if s.split == "test"]
    seen_regions = {s.region for s in test}
    seen_gallery = [
        s
        for s in samples
        if s.split == "test" or (s.split == "gallery" and s.region in seen_regions)
    ]
    sets = [EvalSet("world", test, seen_gallery)]
    for group, members in CONTINENT_GROUPS.items():
        queries = [s for s in test if s.continent in members]
        gallery = [s for s in seen_gallery if s.continent in members]
        sets.append(EvalSet(group, queries, gallery))
    unseen = [s for s in samples if s.split == "test_unseen"]
    unseen_regions = {s.region for s in unseen}
    unseen_gallery = [
        s for s in samples if s.region in unseen_regions and s.split in ("test_unseen", "gallery")
    ]
    sets.append(EvalSet("unseen", unseen, unseen_gallery))
    return [s for s in sets if s.queries]
