"""The informal-register rewrite: the same rewrite for the same text, facts kept, no word
invented, the register changed."""

from __future__ import annotations

import re

from planetloc.data.informal import SHORTHAND, informal

TEXTS = [
    "I am standing on a two-lane street that runs east-west. On my left I see a large parking "
    "lot. To my right there are 28-storey buildings with light grey roofs. Behind me there is "
    "an empty lot. There are almost no trees. Shadows fall behind me.",
    "Easiest way to find me is the parking lot, I'm right by it and it's on my left. Off to my "
    "right you'll see some colonial stone towers with red roofs and a river about 200 metres "
    "ahead. The sidewalk is old concrete slabs.",
    "Me: small street, runs E-W. Ahead, empty sandy tan lot. Colonial stone blocks, 28 fl.",
]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9&][a-z0-9&/-]*", text.lower().replace("'", ""))


def test_the_rewrite_is_fixed_per_text_and_changes_the_register() -> None:
    for text in TEXTS:
        out = informal(text)
        assert out == informal(text)  # a frozen trunk's cache can hold it
        assert out == out.lower() and "'" not in out and not out.endswith(".")
        assert out != text.lower()


def test_no_word_is_invented_and_the_first_sentence_is_kept() -> None:
    many = [f"{t} Around {n} people walk by." for t in TEXTS for n in range(40)]
    allowed_extra = set(SHORTHAND.values()) | {"im"}
    dropped = shortened = 0
    for text in many:
        out = informal(text)
        source = set(_words(text))
        assert set(_words(out)) <= source | allowed_extra, out
        first = re.split(r"(?<=[.!?])\s+", text)[0]
        # The first sentence's numbers and fact words survive (only articles may go).
        for word in _words(first):
            if word not in ("the", "a", "an", *SHORTHAND, "i", "am"):
                assert word in _words(out), (word, out)
        dropped += "walk by" not in out  # the last sentence, dropped or not
        shortened += any(v in _words(out) for v in SHORTHAND.values())
    # Both happen, neither always: the rewrite varies from text to text.
    assert 0 < shortened < len(many)
    assert 0 < dropped < len(many)


def test_an_abbreviation_does_not_end_a_sentence() -> None:
    # Inventory-style text: "approx." is followed by the number it qualifies.
    text = "Front: buildings (concrete), approx. 16 floors, roofs white. Right: a park."
    for n in range(30):
        out = informal(text + f" Left: {n} cars.")
        assert "approx 16 floors" in out or "approx. 16 floors" in out, out
