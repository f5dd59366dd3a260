"""Config files and ``--set`` overrides, read the same way by every command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from planetloc.errors import PlanetlocError


def read_mapping(path: str | os.PathLike[str], what: str = "config") -> dict[str, Any]:
    """The top-level mapping of a YAML file; one-line errors for a missing or bad file."""
    p = Path(path)
    if not p.is_file():
        raise PlanetlocError(f"{p}: {what} file not found")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise PlanetlocError(f"{p}: invalid YAML ({err})") from None
    if not isinstance(loaded, dict):
        raise PlanetlocError(f"{p}: a {what} file must hold a mapping")
    return loaded


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["lr=3e-4", "model.embed_dim=128"]`` -> typed values (parsed as YAML scalars)."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise PlanetlocError(f"override {pair!r} must look like KEY=VALUE")
        out[key.strip()] = yaml.safe_load(raw) if raw else ""
    return out
