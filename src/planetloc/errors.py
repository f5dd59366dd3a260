"""The one error type users see: a one-line message naming the bad file, field or value."""

from __future__ import annotations


class PlanetlocError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` on one line and exits with status 2."""


class NonFiniteError(PlanetlocError, ValueError):
    """Scores or features holding NaN or infinity: a failed computation, never a result.

    A ``ValueError`` too, so that library callers checking values catch it as one."""
