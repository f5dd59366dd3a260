"""Where a build's log lines go: appended to ``<out>/build.log`` (every run of the same build
adds to it) and shown on stderr, with keys and tokens masked in both."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from planetloc.builder.fetch import RedactingFilter, Redactor

LOG_NAME = "build.log"
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


@contextlib.contextmanager
def build_logging(out: str | Path, redactor: Redactor, verbose: bool = False) -> Iterator[Path]:
    """Log the builder to ``<out>/build.log`` (INFO and up, appended) and to stderr
    (warnings, or INFO and up with ``verbose``) while the block runs; yields the log path."""
    path = Path(out) / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    redacting = RedactingFilter(redactor)
    to_stderr = logging.StreamHandler()
    to_stderr.setLevel(logging.INFO if verbose else logging.WARNING)
    to_file = logging.FileHandler(path, mode="a", encoding="utf-8")
    to_file.setLevel(logging.INFO)
    logger = logging.getLogger("planetloc.builder")
    level = logger.level
    logger.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [to_stderr, to_file]
    for handler in handlers:
        handler.addFilter(redacting)
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)
    try:
        yield path
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level)
