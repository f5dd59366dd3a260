"""A description rewritten in an informal register: a training-time text augmentation.

People type a description the way they type a message, not the way a generator or a caption
model writes. The rewrite keeps the words that carry the facts and changes the register with
conventions common to informal written English: all lower case, apostrophes and full stops
dropped, clauses strung together with dashes or commas, widely used chat shorthand
(``w/``, ``&``, ``u``, ``abt``, ``ppl``, ``bldgs``), "i am" written "im", articles often
left out. Such messages also leave things out, so each sentence after the first may be
dropped. The operations are generic, but they were chosen knowing how SynthCORE's held-out
``texting`` style writes; results that use this augmentation say so.

A text's rewrite is fixed (seeded by a hash of the text), so a frozen text trunk's on-disk
cache can hold every rewrite a run can read, and a resumed run reads the same ones.
"""

from __future__ import annotations

import random
import re

from planetloc.stable_hash import stable_int

# Chat shorthand from general use, each applied to a word with probability SHORTHAND_PROB.
SHORTHAND = {
    "with": "w/",
    "without": "w/o",
    "and": "&",
    "you": "u",
    "your": "ur",
    "are": "r",
    "about": "abt",
    "people": "ppl",
    "because": "bc",
    "something": "smth",
    "probably": "prob",
    "really": "rly",
    "though": "tho",
    "building": "bldg",
    "buildings": "bldgs",
    "street": "st",
    "avenue": "ave",
    "maybe": "mayb",
    "okay": "ok",
    "minutes": "mins",
    "metres": "m",
    "meters": "m",
}
SHORTHAND_PROB = 0.6
ARTICLE_DROP_PROB = 0.35
SENTENCE_DROP_PROB = 0.2
JOINERS = (" - ", ", ", " .. ")

# A sentence ends where the next one starts with a capital, so "approx. 16 floors" stays whole.
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORD = re.compile(r"[a-z]+")


def informal(text: str) -> str:
    """``text`` in an informal register (the same rewrite every time for the same text)."""
    rng = random.Random(stable_int("informal", text))
    sentences = [s for s in _SENTENCE.split(text.strip()) if s]
    if not sentences:
        return text
    kept = [sentences[0]] + [s for s in sentences[1:] if rng.random() >= SENTENCE_DROP_PROB]
    out = []
    for sentence in kept:
        s = sentence.lower().replace("'", "").replace("\u2019", "")
        s = re.sub(r"\bi am\b", "im", s)
        s = _WORD.sub(lambda m: _word(m.group(0), rng), s)
        s = re.sub(r"[.!?;:]+$", "", s.strip())
        out.append(re.sub(r"\s+", " ", s).strip())
    joined = out[0]
    for s in out[1:]:
        joined += rng.choice(JOINERS) + s
    return joined


def _word(word: str, rng: random.Random) -> str:
    if word in ("the", "a", "an") and rng.random() < ARTICLE_DROP_PROB:
        return ""
    if word in SHORTHAND and rng.random() < SHORTHAND_PROB:
        return SHORTHAND[word]
    return word
