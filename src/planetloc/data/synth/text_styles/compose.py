"""The one loop every text style shares: choose cues, word them, order, fit the length.

A style supplies its own word range, the probability it tells each kind of cue, which cues
it keeps longest when a text runs long, a plan (cue order and any per-text choices), the
wording of each cue and the way clauses are joined. This module only runs those pieces, so
styles share no phrasing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from planetloc.data.synth.observation import Observation

EXTRA = "extra"  # the cue group of every unseen detail, and its place in a plan's order


@dataclass
class Plan:
    """Per-text choices of a style: the order cues are told in, and anything else it needs.

    A style makes its plan knowing the cues it has chosen to tell (more may be added later
    to reach its minimum length).

    ``order`` lists cue names; :data:`EXTRA` marks where unseen details go (at the end when
    absent). ``notes`` holds a style's own choices (e.g. lower case, a landmark).
    """

    order: list[str]
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StyleSpec:
    """Everything that makes one text style; see the module docstring."""

    name: str
    min_words: int
    max_words: int
    keep: Mapping[str, float]  # cue or cue group -> probability a mentioned cue is told
    rank: Mapping[str, int]  # cue or cue group -> how long it survives trimming (higher longer)
    plan: Callable[[Observation, tuple[str, ...], np.random.Generator], Plan]
    phrase: Callable[[Observation, Plan, str, np.random.Generator], str]
    join: Callable[[Observation, Plan, list[tuple[str, str]], np.random.Generator], str]


@dataclass(frozen=True)
class Composition:
    """A written text and what it is made of.

    ``clauses`` pairs each cue told with its wording before joining (joining may change
    case and punctuation, and run clauses together), in the order the text tells them.
    """

    style: str
    text: str
    clauses: tuple[tuple[str, str], ...]

    @property
    def cues(self) -> tuple[str, ...]:
        """The cues the text tells, in order."""
        return tuple(cue for cue, _ in self.clauses)


def cue_group(cue: str) -> str:
    """``extra`` for every unseen detail, the cue itself otherwise."""
    return EXTRA if cue.startswith(f"{EXTRA}:") else cue


def pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """One of ``options``, drawn from ``rng``."""
    return options[int(rng.integers(len(options)))]


def word_count(text: str) -> int:
    """Words as the length rules count them: runs of non-space characters."""
    return len(text.split())


def compose(record: Observation, spec: StyleSpec, rng: np.random.Generator) -> Composition:
    """Write ``record`` in the style ``spec``, within its word range."""
    keep = {c: spec.keep.get(cue_group(c), 1.0) for c in (*record.cues, *record.spare)}
    told = [c for c in record.cues if c == "street" or rng.random() < keep[c]]
    dropped = [c for c in record.cues if c not in told]
    # When short, a style first adds back what it likes telling: facts the difficulty left
    # out, then its own drops, then further unseen details.
    facts = [c for c in record.spare if cue_group(c) != EXTRA]
    extras = [c for c in record.spare if cue_group(c) == EXTRA]
    reserve = sorted(facts + dropped, key=lambda c: -keep[c]) + extras
    plan = spec.plan(record, tuple(told), rng)
    join_seed = int(rng.integers(2**32))
    clauses: dict[str, str] = {}

    def position(cue: str) -> tuple[int, int]:
        key = cue_group(cue)
        slot = plan.order.index(key) if key in plan.order else len(plan.order)
        within = record.extras.index(cue.split(":", 1)[1]) if key == EXTRA else 0
        return slot, within

    def render(cues: list[str]) -> str:
        for cue in cues:
            if cue not in clauses:
                clauses[cue] = spec.phrase(record, plan, cue, rng)
        ordered = sorted(cues, key=position)
        parts = [(c, clauses[c]) for c in ordered]
        return spec.join(record, plan, parts, np.random.default_rng(join_seed))

    text = render(told)
    while word_count(text) < spec.min_words and reserve:
        told.append(reserve.pop(0))
        text = render(told)
    while word_count(text) > spec.max_words and len(told) > 1:
        trimmable = [c for c in told if c != "street"]
        told.remove(min(reversed(trimmable), key=lambda c: spec.rank.get(cue_group(c), 0)))
        text = render(told)
    ordered = sorted(told, key=position)
    return Composition(spec.name, text, tuple((c, clauses[c]) for c in ordered))
