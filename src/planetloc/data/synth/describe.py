"""First-person ground-level descriptions of SynthCORE scenes, in several writing styles.

A description is made in two steps:

1. ``observe(region_map, scene, observer, *, intersection, difficulty, rng) -> Observation``
   measures what lies around the observer and draws, from ``rng``, which cues the
   difficulty lets through and which it gets wrong (see ``synth.observation``). The record
   holds facts only, no wording.
2. ``write(record, style, rng) -> str`` words the record in one of ``STYLES`` (see
   ``synth.text_styles``): each style has its own phrasing, cue order, word range and
   habits of leaving things out, and tells nothing the record does not hold.

``describe(region_map, scene, observer, *, intersection, difficulty, rng, style="caption")``
does both and returns ``(text, measured)``, ``measured`` being the sector and overall
measurements (keys ``<quantity>_<sector>`` and ``<quantity>_all``).
``describe_all(record, styles, rng)`` writes one record in several styles, e.g. to keep
paraphrases of a training text, or the ``HELD_OUT_STYLE`` text of a test sample; training
texts come from ``TRAIN_STYLES`` only.

Like a real caption a text is partial (some cues are left out), mentions things a satellite
cannot see, and at higher difficulty gets a few details wrong; it never names a place.
"""

from __future__ import annotations

import numpy as np

from planetloc.data.synth.observation import (
    AXES,
    COMPASS8,
    DIFFICULTY,
    NEAR_RADIUS_M,
    SECTORS,
    VIEW_RADIUS_M,
    Observation,
    Observer,
    SectorView,
    axis_name,
    choose_heading,
    compass_name,
    observe,
    storeys,
)
from planetloc.data.synth.render import Scene
from planetloc.data.synth.text_styles import (
    HELD_OUT_STYLE,
    STYLES,
    TRAIN_STYLES,
    WORD_RANGES,
    Composition,
    compose,
    describe_all,
    write,
)
from planetloc.data.synth.world import RegionMap

# Word range of the default ``caption`` style.
MIN_WORDS, MAX_WORDS = WORD_RANGES["caption"]

__all__ = [
    "AXES",
    "COMPASS8",
    "DIFFICULTY",
    "HELD_OUT_STYLE",
    "MAX_WORDS",
    "MIN_WORDS",
    "NEAR_RADIUS_M",
    "SECTORS",
    "STYLES",
    "TRAIN_STYLES",
    "VIEW_RADIUS_M",
    "WORD_RANGES",
    "Composition",
    "Observation",
    "Observer",
    "SectorView",
    "axis_name",
    "choose_heading",
    "compass_name",
    "compose",
    "describe",
    "describe_all",
    "observe",
    "storeys",
    "write",
]


def describe(
    region_map: RegionMap,
    scene: Scene,
    obs: Observer,
    *,
    intersection: bool,
    difficulty: str,
    rng: np.random.Generator,
    style: str = "caption",
) -> tuple[str, dict[str, float]]:
    """A first-person description in ``style`` and the measurements it was made from."""
    record = observe(
        region_map, scene, obs, intersection=intersection, difficulty=difficulty, rng=rng
    )
    return write(record, style, rng), dict(record.measured)
