"""The one error type users see: a one-line message naming the bad file, field or value."""

from __future__ import annotations


class PlanetlocError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` on one line and exits with status 2."""
