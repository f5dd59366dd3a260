"""WebDataset shards of a SynthCORE world, and the manifest streamed from them.

A shard ``shards/<name>.tar`` is a plain USTAR tar (written by
:func:`planetloc.data.shards.write_tar`: mtime 0, mode 0644, no owners). Each sample is a key
(its id with ``.`` replaced by ``_``) with its members: ``<key>.json`` (the sample's record
in the manifest schema), ``<key>.sat.png`` or ``<key>.sat.jpg`` (its tile) and, for a
described sample of a world with street views, ``<key>.street.jpg``; members come
sorted by key and then by name, so a shard's bytes depend on nothing but its samples. A
record's ``sat_path`` is ``shards/<name>.tar#<key>.sat.<ext>``: the tar, relative to the
manifest, then the member.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from planetloc.data.shards import MEMBER_SEP, write_tar
from planetloc.errors import PlanetlocError

SHARD_DIR = "shards"


def sat_member(key: str, ext: str) -> str:
    return f"{key}.sat.{ext}"


def sat_path(shard: str, key: str, ext: str) -> str:
    """The ``sat_path`` of a tile stored in a shard: ``shards/<shard>.tar#<key>.sat.<ext>``."""
    return f"{SHARD_DIR}/{shard}.tar{MEMBER_SEP}{sat_member(key, ext)}"


def shard_path(root: Path, shard: str) -> Path:
    return root / SHARD_DIR / f"{shard}.tar"


def write_shard(path: Path, samples: Iterable[tuple[str, dict[str, bytes]]]) -> None:
    """Atomically write a tar of ``(key, {suffix: bytes})`` samples, in the canonical order."""
    members = [
        (f"{key}.{suffix}", parts[suffix])
        for key, parts in sorted(samples, key=lambda item: item[0])
        for suffix in sorted(parts)
    ]
    write_tar(path, members)


def read_shard_records(path: Path) -> list[dict[str, Any]]:
    """The ``.json`` records of a shard, in member order."""
    records = []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    handle = tar.extractfile(member)
                    assert handle is not None
                    records.append(json.loads(handle.read().decode("utf-8")))
    except (tarfile.TarError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PlanetlocError(f"{path}: damaged shard ({err}); delete it and rerun") from None
    return records


def remove_stale_temporaries(folder: Path) -> None:
    """Delete half-written shards a killed run left behind (atomic writes' temporary files)."""
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
