"""WebDataset shards: plain tar files whose members ``<key>.<ext>`` group into samples.

A sample's members are ``<key>.json`` (its record in the sample schema), ``<key>.sat.<ext>``
(the satellite tile), optionally ``<key>.street.<ext>`` (the street view) and ``<key>.txt``
(the text, also in the record). Shards are read with the ``webdataset`` library's tar
iterator and key grouping, in an order planetloc controls (see :mod:`planetloc.data.stream`).

A manifest may point into shards: an image path ``shards/a-000001.tar#k.sat.jpg`` names the
member ``k.sat.jpg`` of that tar, read by random access through a per-tar member index, so
every consumer that reads images by path (validation, indexing, the service) works on
sharded datasets too.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planetloc.atomic import atomic_path, write_text
from planetloc.errors import PlanetlocError

MEMBER_SEP = "#"
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


@dataclass
class RawSample:
    """One sample as stored: its key, record, and undecoded image bytes."""

    key: str
    record: dict[str, Any]
    sat: bytes
    street: bytes | None = None
    source: str = ""  # shard or manifest it came from, for error messages


def split_member_path(path: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """``(tar path, member)`` when ``path`` names a member inside a tar, else None."""
    text = str(path)
    tar, sep, member = text.rpartition(MEMBER_SEP)
    if not sep or not tar.endswith(".tar") or not member:
        return None
    return Path(tar), member


@functools.lru_cache(maxsize=64)
def _member_index(tar_path: str, mtime_ns: int, size: int) -> dict[str, tuple[int, int]]:
    """Offsets and sizes of every regular member, from the tar headers (data is not read)."""
    index: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            for info in tar:
                if info.isreg():
                    index[info.name] = (info.offset_data, info.size)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise PlanetlocError(f"{tar_path}: unreadable shard ({err})") from None
    return index


def read_member(tar_path: str | os.PathLike[str], member: str) -> bytes:
    """The bytes of one member of a tar, by random access."""
    p = Path(tar_path)
    try:
        stat = p.stat()
    except OSError:
        raise PlanetlocError(f"{p}: shard not found") from None
    where = _member_index(str(p), stat.st_mtime_ns, stat.st_size).get(member)
    if where is None:
        raise PlanetlocError(f"{p}: shard has no member {member!r}")
    offset, size = where
    with open(p, "rb") as fh:
        fh.seek(offset)
        data = fh.read(size)
    if len(data) != size:
        raise PlanetlocError(f"{p}: member {member!r} is truncated")
    return data


def sample_key(sample_id: str) -> str:
    """The member prefix of a sample: its id, with dots (which separate extensions) replaced."""
    return sample_id.replace(".", "_")


def write_tar(path: str | os.PathLike[str], members: Iterable[tuple[str, bytes]]) -> None:
    """Atomically write a deterministic USTAR tar: members in the given order, mtime 0, 0644.

    The same members always give the same bytes, so reruns and any number of workers agree.
    """
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


def _image_member(group: dict[str, Any], role: str) -> bytes | None:
    for ext in IMAGE_EXTS:
        value = group.get(f"{role}.{ext}")
        if value is not None:
            return value
    return None


def tar_is_complete(path: Path) -> bool:
    """Whether a tar ends as a written tar does: whole 512-byte blocks, the last two zero.

    A tar cut short at a header boundary reads as a shorter valid archive, silently losing
    samples; its end betrays it.
    """
    try:
        size = path.stat().st_size
        if size < 1024 or size % 512:
            return False
        with open(path, "rb") as fh:
            fh.seek(size - 1024)
            return fh.read(1024) == bytes(1024)
    except OSError:
        return False


def iter_shard(path: str | os.PathLike[str]) -> Iterator[RawSample]:
    """Every sample of one shard, in tar order.

    Raises one-line errors naming the shard and the key for a truncated tar, a duplicated
    member, and a sample without its image or its JSON record.
    """
    from webdataset.tariterators import group_by_keys, tar_file_expander

    p = Path(path)
    if p.is_file() and not tar_is_complete(p):
        raise PlanetlocError(f"{p}: truncated or damaged shard (it does not end as a tar does)")
    try:
        fh = open(p, "rb")  # noqa: SIM115 (opened here to name the shard if it fails)
    except OSError as err:
        raise PlanetlocError(f"{p}: cannot open shard ({err.strerror})") from None
    with fh:
        files = tar_file_expander([{"url": str(p), "stream": fh}])
        groups = group_by_keys(files)
        while True:
            try:
                group = next(groups)
            except StopIteration:
                return
            except ValueError as err:  # webdataset's duplicate-member error
                name = str(err.args[0]).split(":", 1)[0] if err.args else "?"
                raise PlanetlocError(f"{p}: duplicated member {name!r}") from None
            except (tarfile.TarError, OSError, EOFError) as err:
                raise PlanetlocError(f"{p}: truncated or damaged shard ({err})") from None
            yield decode_group(group, p)


def decode_group(group: dict[str, Any], shard: Path) -> RawSample:
    """A grouped tar sample -> :class:`RawSample`, with one-line errors for missing parts."""
    key = group["__key__"]
    raw = group.get("json")
    if raw is None:
        raise PlanetlocError(f"{shard}: sample {key!r} has no {key}.json record")
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PlanetlocError(
            f"{shard}: sample {key!r} has an invalid JSON record ({err})"
        ) from None
    if not isinstance(record, dict):
        raise PlanetlocError(f"{shard}: sample {key!r}: the JSON record must be an object")
    sat = _image_member(group, "sat")
    if sat is None:
        raise PlanetlocError(f"{shard}: sample {key!r} has no satellite image ({key}.sat.jpg/png)")
    return RawSample(
        key=key, record=record, sat=sat, street=_image_member(group, "street"), source=str(shard)
    )


def find_shards(data: str | os.PathLike[str]) -> list[Path]:
    """The shard files of a dataset: a glob/brace pattern, a folder of tars, or a dataset
    folder holding ``shards/`` or ``webdataset/``. Sorted, so every process sees one order."""
    from webdataset.shardlists import expand_urls

    text = str(data)
    if any(ch in text for ch in "*?{"):
        import glob

        paths = sorted({Path(q) for pattern in expand_urls(text) for q in glob.glob(pattern)})
    else:
        folder = Path(text)
        candidates = [folder, folder / "shards", folder / "webdataset"]
        paths = []
        for c in candidates:
            if c.is_dir():
                paths = sorted(c.glob("*.tar"))
                if paths:
                    break
    return paths


SPLITS_FILE = ".planetloc-splits.json"
DAMAGED = "*damaged*"


def shard_split_counts(paths: list[Path]) -> dict[str, dict[str, int]]:
    """How many samples of each split every shard holds, by shard file name.

    Read from the records (``.json`` members only; images are skipped) and remembered beside
    the shards, keyed by each shard's size and modification time, so a dataset is scanned
    once. A folder that cannot be written to is scanned each time.
    """
    if not paths:
        return {}
    folder = Path(paths[0]).parent
    cache_path = folder / SPLITS_FILE
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    counts: dict[str, dict[str, int]] = {}
    changed = False
    for path in paths:
        stat = Path(path).stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = cache.get(Path(path).name)
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            counts[Path(path).name] = entry["splits"]
            continue
        splits = _count_splits(Path(path))
        cache[Path(path).name] = {"stamp": stamp, "splits": splits}
        counts[Path(path).name] = splits
        changed = True
    if changed:
        with contextlib.suppress(OSError):  # a read-only dataset: counted again next time
            write_text(cache_path, json.dumps(cache, sort_keys=True))
    return counts


def _count_splits(path: Path) -> dict[str, int]:
    splits: dict[str, int] = {}
    if not tar_is_complete(path):
        return {DAMAGED: 1}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if info.isreg() and info.name.endswith(".json"):
                    fh = tar.extractfile(info)
                    try:
                        record = json.loads(fh.read()) if fh else None
                    except ValueError:
                        continue  # the reader reports a bad record where it meets it
                    if isinstance(record, dict):
                        split = str(record.get("split", ""))
                        splits[split] = splits.get(split, 0) + 1
    except (tarfile.TarError, OSError, EOFError):
        # A damaged shard goes to every split's readers, so one of them meets it and stops
        # with its one-line error (or skips it and counts, with --on-bad-sample skip).
        splits[DAMAGED] = 1
    return splits
