"""Where a dataset's derived caches live (frozen-trunk text features, tile signatures).

``auto`` keeps them in ``.planetloc-cache/`` beside the dataset's manifest (or its shards), so
every run and evaluation on that dataset shares them; ``off`` keeps none; anything else is a
folder of the user's choosing. A dataset folder the user cannot write (a colleague's, a
read-only mount) under ``auto`` gets no cache rather than an error: caches only save time.
"""

from __future__ import annotations

import os
from pathlib import Path

from planetloc.data.manifest import find_manifest
from planetloc.data.shards import find_shards
from planetloc.errors import PlanetlocError

CACHE_FOLDER = ".planetloc-cache"


def dataset_manifest(data: str | os.PathLike[str]) -> Path | None:
    """The dataset's manifest, if it has one (shards alone need none)."""
    try:
        path = find_manifest(data)
    except PlanetlocError:
        return None
    return path if path.is_file() and path.suffix in (".jsonl", ".parquet") else None


def cache_root(data: str | os.PathLike[str], setting: str) -> Path | None:
    """The cache folder for ``data`` under ``setting`` (auto / off / a folder), or None."""
    if setting == "off":
        return None
    if setting != "auto":
        return Path(setting)
    manifest = dataset_manifest(data)
    if manifest is not None:
        home = manifest.parent
    else:
        shards = find_shards(data)
        if not shards:
            return None
        home = shards[0].parent
    root = home / CACHE_FOLDER
    writable = os.access(root, os.W_OK) if root.is_dir() else os.access(home, os.W_OK)
    return root if writable else None
