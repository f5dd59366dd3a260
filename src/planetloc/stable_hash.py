"""Seeds and buckets that are the same on every machine, process and Python run.

Python's own ``hash`` is salted per process; everything that must come out identical
(per-region seeds, split assignment, the loopback providers' answers) hashes through here.
"""

from __future__ import annotations

import hashlib


def stable_int(*parts: object) -> int:
    """A 64-bit integer from the ``:``-joined text of ``parts`` (SHA-256, first 8 bytes)."""
    text = ":".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def stable_unit(*parts: object) -> float:
    """:func:`stable_int` mapped to [0, 1)."""
    return stable_int(*parts) / 2**64
