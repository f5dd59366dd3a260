"""Config files and ``--set`` overrides, read the same way by every command."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from planetloc.errors import PlanetlocError


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads on/off/yes/no as booleans, so
    ``text_cache: off`` would arrive as False where the setting means the word ``off``."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text the way every planetloc config is read (see :class:`_Loader`)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no Python objects


def read_mapping(path: str | os.PathLike[str], what: str = "config") -> dict[str, Any]:
    """The top-level mapping of a YAML file; one-line errors for a missing or bad file."""
    p = Path(path)
    if not p.is_file():
        raise PlanetlocError(f"{p}: {what} file not found")
    try:
        loaded = load_yaml(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise PlanetlocError(f"{p}: not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        raise PlanetlocError(f"{p}: invalid YAML ({' '.join(str(err).split())})") from None
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
        try:
            out[key.strip()] = load_yaml(raw) if raw else ""
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or "invalid YAML"
            raise PlanetlocError(
                f"--set {key.strip()}: value {raw!r} is not YAML ({problem})"
            ) from None
    return out


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` as the type ``annotation`` names, or a one-line error naming ``key``.

    YAML reads ``3e-4`` (no dot) as a string and users write ``steps=2.5``: numbers are parsed
    and checked here, once, so a wrong type never reaches the optimiser. Non-finite numbers
    are refused.
    """
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return coerce(value, option, key)
            except PlanetlocError as err:
                errors.append(str(err))
        raise PlanetlocError(errors[0])
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise PlanetlocError(f"setting {key!r} must be true or false, got {value!r}")
    if annotation is int:
        number = _number(value, key, "an integer")
        if not float(number).is_integer():
            raise PlanetlocError(f"setting {key!r} must be an integer, got {value!r}")
        return int(number)
    if annotation is float:
        return float(_number(value, key, "a number"))
    if annotation is str:
        if not isinstance(value, str):
            raise PlanetlocError(f"setting {key!r} must be text, got {value!r}")
        return value
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise PlanetlocError(f"setting {key!r} must be a list, got {value!r}")
        items = [v.strip() if isinstance(v, str) else v for v in items]
        items = [v for v in items if v != ""]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in items)
        if len(items) != len(args):
            raise PlanetlocError(f"setting {key!r} needs {len(args)} values, got {value!r}")
        return tuple(coerce(v, a, key) for v, a in zip(items, args, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise PlanetlocError(f"setting {key!r} must be a mapping, got {value!r}")
        return {coerce(k, args[0], key): coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    return value


def _number(value: Any, key: str, what: str) -> float | int:
    import math

    if isinstance(value, bool):
        raise PlanetlocError(f"setting {key!r} must be {what}, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise PlanetlocError(f"setting {key!r} must be {what}, got {value!r}") from None
    if not isinstance(value, int | float):
        raise PlanetlocError(f"setting {key!r} must be {what}, got {value!r}")
    if not math.isfinite(value):
        raise PlanetlocError(f"setting {key!r} must be a finite number, got {value!r}")
    return value
