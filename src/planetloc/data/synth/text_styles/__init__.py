"""Text styles: independent ways of writing one :class:`Observation` as a description.

(Not to be confused with ``synth.style``, which is a region's look.)

Each style is its own module with its own phrase banks, sentence shapes, cue order, word
range and habits of leaving cues out; all stay in the first person, tell only what the
record holds (its deliberate errors included) and never name a place.

===============  =====  ==========================================================
style            words  voice
===============  =====  ==========================================================
``caption``      60-200 complete, even sentences of an image-captioning model
``terse``        25-80  clipped field notes ("3-storey brick, red roofs, left.")
``chatty``       50-170 talking on the phone: fillers, "kinda", run-on sentences
``directions``   40-140 how to find me: landmark first, "you'll reach ..."
``inventory``    35-120 labelled checklist ("In front: car park; Left side: ...")
``texting``      25-100 phone message: lower case, "bldgs", "w/", no apostrophes
===============  =====  ==========================================================

Public API:

- ``STYLES``: every style name; ``HELD_OUT_STYLE`` (``"texting"``), reserved for
  evaluation and never used for training texts; ``TRAIN_STYLES``: the others;
  ``WORD_RANGES``: ``{style: (min_words, max_words)}``.
- ``write(record, style, rng) -> str``: the text of one record in one style.
- ``compose(record, style, rng) -> Composition``: the same text plus the cues it tells.
- ``describe_all(record, styles, rng) -> dict[str, str]``: several styles of one record.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from planetloc.data.synth.observation import Observation
from planetloc.data.synth.text_styles import (
    caption,
    chatty,
    directions,
    inventory,
    terse,
    texting,
)
from planetloc.data.synth.text_styles.compose import Composition, StyleSpec
from planetloc.data.synth.text_styles.compose import compose as _compose
from planetloc.errors import PlanetlocError

_SPECS: dict[str, StyleSpec] = {
    spec.name: spec
    for spec in (
        caption.SPEC,
        terse.SPEC,
        chatty.SPEC,
        directions.SPEC,
        inventory.SPEC,
        texting.SPEC,
    )
}
STYLES: tuple[str, ...] = tuple(_SPECS)
HELD_OUT_STYLE: str = texting.SPEC.name
TRAIN_STYLES: tuple[str, ...] = tuple(s for s in STYLES if s != HELD_OUT_STYLE)
WORD_RANGES: dict[str, tuple[int, int]] = {
    name: (spec.min_words, spec.max_words) for name, spec in _SPECS.items()
}

__all__ = [
    "HELD_OUT_STYLE",
    "STYLES",
    "TRAIN_STYLES",
    "WORD_RANGES",
    "Composition",
    "compose",
    "describe_all",
    "write",
]


def _spec(style: str) -> StyleSpec:
    spec = _SPECS.get(style)
    if spec is None:
        raise PlanetlocError(f"unknown text style {style!r}; choose from {', '.join(STYLES)}")
    return spec


def compose(record: Observation, style: str, rng: np.random.Generator) -> Composition:
    """Write ``record`` in ``style``; return the text and the cues it tells, in order."""
    return _compose(record, _spec(style), rng)


def write(record: Observation, style: str, rng: np.random.Generator) -> str:
    """The text of ``record`` in ``style`` (a name in :data:`STYLES`)."""
    return compose(record, style, rng).text


def describe_all(
    record: Observation, styles: Iterable[str], rng: np.random.Generator
) -> dict[str, str]:
    """Texts of one record in several styles, keyed by style.

    Draws one seed from ``rng``; each style's text depends only on that seed and the style,
    so asking for more or fewer styles does not change the text of any other.
    """
    names = list(dict.fromkeys(styles))
    specs = [_spec(name) for name in names]
    seed = int(rng.integers(2**63))
    return {
        spec.name: _compose(
            record, spec, np.random.default_rng([seed, STYLES.index(spec.name)])
        ).text
        for spec in specs
    }
