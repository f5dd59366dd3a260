"""The files the page needs, read once at start-up and served from memory.

``static/`` holds the page (index.html, app.js, app.css, the API docs page) and ``vendor/``:
Leaflet and Swagger UI, installed from the npm registry by ``make setup`` (pinned in
``web/package-lock.json``, not committed). Only files present at start-up are served, by
exact name: a request path never reaches the filesystem.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from planetloc.errors import PlanetlocError

REQUIRED = (
    "index.html",
    "app.js",
    "app.css",
    "docs.html",
    "docs.js",
    "vendor/leaflet/leaflet.js",
    "vendor/leaflet/leaflet.css",
    "vendor/swagger-ui/swagger-ui-bundle.js",
    "vendor/swagger-ui/swagger-ui.css",
)


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


def static_folder() -> Path:
    """The ``static/`` folder inside the installed package."""
    return Path(str(resources.files("planetloc.serve").joinpath("static")))


def load_assets(folder: Path | None = None) -> dict[str, Asset]:
    """Every file under ``folder`` by its relative path; refuse to start if one is missing."""
    root = static_folder() if folder is None else Path(folder)
    missing = [name for name in REQUIRED if not (root / name).is_file()]
    if missing:
        hint = (
            "the map's browser libraries are installed by `make setup` (npm ci in web/)"
            if missing[0].startswith("vendor/")
            else "the package is incomplete"
        )
        raise PlanetlocError(f"{root / missing[0]} is missing: {hint}")
    assets = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind == "application/javascript":
                kind += "; charset=utf-8"
            assets[path.relative_to(root).as_posix()] = Asset(path.read_bytes(), kind)
    return assets
