"""Read, validate and write manifests (JSONL or Parquet) in the sample schema.

Every error names the file, the row (1-based line for JSONL, 0-based row for Parquet), the
sample id where known, and the bad field or value, on one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from planetloc.atomic import atomic_path
from planetloc.data.schema import ALL_FIELDS, Sample, check_record
from planetloc.errors import PlanetlocError

OnBad = Literal["fail", "skip"]
FORMATS = (".jsonl", ".parquet")
PARQUET_BATCH_ROWS = 4096  # rows per Parquet row group written, and per batch read


@dataclass
class BadSample:
    """A row that failed validation: where it is and why."""

    row: int
    id: str | None
    reason: str


@dataclass
class Manifest:
    """Validated samples, the folder their relative paths start from, and what was skipped."""

    path: Path
    samples: list[Sample]
    skipped: list[BadSample] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """Absolute path of an image path stored in this manifest."""
        return self.root / relative

    def by_split(self, *splits: str) -> list[Sample]:
        return [s for s in self.samples if s.split in splits]


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise PlanetlocError(
            f"{path}: unsupported manifest format {suffix!r} (use .jsonl or .parquet)"
        )
    return suffix


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield lineno, None, f"text is not valid UTF-8 (byte {err.start})"
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                yield lineno, None, f"invalid JSON ({err.msg} at column {err.colno})"
                continue
            if not isinstance(record, dict):
                yield lineno, None, "a row must be a JSON object"
                continue
            yield lineno, record, None


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
        # Batches keep memory bounded whatever the file's row-group size.
        batches = reader.iter_batches(batch_size=PARQUET_BATCH_ROWS)
        index = 0
        for batch in batches:
            for row in batch.to_pylist():
                yield (index, *parquet_record(row))
                index += 1
    except PlanetlocError:
        raise
    except Exception as err:  # pyarrow raises several types for damaged files
        raise PlanetlocError(f"{path}: cannot read Parquet file ({err})") from None


def parquet_record(row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """A Parquet row as a schema record (text columns decoded, ``meta`` parsed), or a problem."""
    bad = None
    for key, value in list(row.items()):
        if isinstance(value, bytes):
            try:
                row[key] = value.decode("utf-8")
            except UnicodeDecodeError:
                bad = f"field {key!r} is not valid UTF-8"
    meta = row.get("meta")
    if isinstance(meta, str):
        try:
            row["meta"] = json.loads(meta) if meta else {}
        except json.JSONDecodeError:
            bad = "field 'meta' is not valid JSON"
    # Parquet has a column for every field: absent optional values come back as None.
    row = {k: v for k, v in row.items() if not (k in ("street_path", "meta") and v is None)}
    return (None if bad else row), bad


def iter_rows(
    path: str | os.PathLike[str],
) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Stream a manifest's raw rows as ``(row number, record or None, problem or None)``.

    Rows are numbered as errors name them: 1-based lines for JSONL, 0-based rows for Parquet.
    Memory stays bounded whatever the manifest's size.
    """
    mpath = Path(path)
    if not mpath.is_file():
        raise PlanetlocError(f"{mpath}: manifest not found")
    return _iter_jsonl(mpath) if _format_of(mpath) == ".jsonl" else _iter_parquet(mpath)


def check_image(path: Path | str) -> str | None:
    """Why the image at ``path`` (a file or ``shard.tar#member``) cannot be used, or None."""
    from planetloc.data.images import decode_rgb, read_image_bytes
    from planetloc.data.shards import split_member_path

    if split_member_path(path) is None:
        if not Path(path).is_file():
            return "file not found"
        if Path(path).stat().st_size == 0:
            return "file is empty (0 bytes)"
    try:
        data = read_image_bytes(path)
        if not data:
            return "image is empty (0 bytes)"
        decode_rgb(data, source=str(path))  # decodes every byte: truncated data fails here
    except PlanetlocError as err:
        return str(err).removeprefix(f"{path}: ")
    return None


def find_manifest(path: str | os.PathLike[str]) -> Path:
    """A manifest path, or the manifest.jsonl/.parquet inside a dataset folder."""
    p = Path(path)
    if p.is_dir():
        for name in ("manifest.jsonl", "manifest.parquet"):
            if (p / name).is_file():
                return p / name
        raise PlanetlocError(f"{p}: no manifest.jsonl or manifest.parquet in this folder")
    return p


def _image_problem(sample: Sample, root: Path) -> str | None:
    for name in ("sat_path", "street_path"):
        rel = getattr(sample, name)
        if rel is not None and (why := check_image(root / rel)) is not None:
            return f"field {name!r} = {rel!r}: {why}"
    return None


def read_manifest(
    path: str | os.PathLike[str],
    *,
    on_bad_sample: OnBad = "fail",
    check_images: bool = True,
    splits: tuple[str, ...] | None = None,
) -> Manifest:
    """Read and validate a manifest.

    With ``on_bad_sample="fail"`` the first bad row raises :class:`PlanetlocError`; with
    ``"skip"`` bad rows are dropped and listed in ``Manifest.skipped``. ``splits`` keeps only
    those splits' rows (memory then grows with them, not with the file).
    """
    mpath = Path(path)
    where = "line" if _format_of(mpath) == ".jsonl" else "row"
    rows = iter_rows(mpath)
    return _validate(rows, mpath, where, on_bad_sample, check_images, splits)


def _validate(
    rows: Iterable[tuple[int, dict[str, Any] | None, str | None]],
    mpath: Path,
    where: str,
    on_bad_sample: OnBad,
    check_images: bool,
    splits: tuple[str, ...] | None = None,
    label_path: Path | None = None,
) -> Manifest:
    if on_bad_sample not in ("fail", "skip"):
        raise PlanetlocError(f"on_bad_sample must be 'fail' or 'skip', got {on_bad_sample!r}")
    samples: list[Sample] = []
    skipped: list[BadSample] = []
    seen: set[str] = set()

    def reject(row: int, sid: str | None, reason: str) -> None:
        label = f"{label_path or mpath}: {where} {row}" + (f" (id={sid!r})" if sid else "")
        if on_bad_sample == "fail":
            raise PlanetlocError(f"{label}: {reason}")
        skipped.append(BadSample(row=row, id=sid, reason=reason))

    for row, record, problem in rows:
        sid = record.get("id") if isinstance(record, dict) else None
        sid = sid if isinstance(sid, str) else None
        if problem is None:
            sample, problem = check_record(record)  # type: ignore[arg-type]
        if problem is not None:
            reject(row, sid, problem)
            continue
        assert sample is not None
        if splits is not None and sample.split not in splits:
            continue
        if sample.id in seen:
            reject(row, sample.id, f"duplicate id {sample.id!r}")
            continue
        image_problem = _image_problem(sample, mpath.parent) if check_images else None
        if image_problem is not None:
            reject(row, sample.id, image_problem)
            continue
        seen.add(sample.id)
        samples.append(sample)
    if not samples and not skipped:
        which = f" in split {', '.join(splits)}" if splits else ""
        raise PlanetlocError(f"{mpath}: manifest has no samples{which}")
    return Manifest(path=mpath, samples=samples, skipped=skipped)


def write_manifest(samples: Iterable[Sample], path: str | os.PathLike[str]) -> Path:
    """Atomically write samples as JSONL or Parquet (chosen by the file suffix)."""
    return write_records(([s.to_dict() for s in samples],), path)


def write_records(batches: Iterable[list[dict[str, Any]]], path: str | os.PathLike[str]) -> Path:
    """Atomically write schema records arriving in batches, never holding them all.

    JSONL rows with sorted keys; Parquet with one string column per field (``meta`` as JSON),
    float lat/lon, and row groups of ``PARQUET_BATCH_ROWS`` rows.
    """
    mpath = Path(path)
    fmt = _format_of(mpath)
    with atomic_path(mpath) as tmp:
        if fmt == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for batch in batches:
                    for row in batch:
                        fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            return mpath
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [(n, pa.float64() if n in ("lat", "lon") else pa.string()) for n in ALL_FIELDS]
        )
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch in batches:
                for start in range(0, len(batch), PARQUET_BATCH_ROWS):
                    columns: dict[str, list[Any]] = {name: [] for name in ALL_FIELDS}
                    for row in batch[start : start + PARQUET_BATCH_ROWS]:
                        for name in ALL_FIELDS:
                            value = row.get(name)
                            if name == "meta":
                                value = json.dumps(value or {}, ensure_ascii=False, sort_keys=True)
                            columns[name].append(value)
                    writer.write_table(pa.table(columns, schema=schema))
    return mpath


def skip_report(manifest: Manifest, limit: int = 10) -> str:
    """One line per skipped-sample reason, for the ``--on-bad-sample skip`` summary."""
    if not manifest.skipped:
        return f"{manifest.path}: {len(manifest.samples)} samples, none skipped"
    ids = [b.id or f"row {b.row}" for b in manifest.skipped[:limit]]
    more = "" if len(manifest.skipped) <= limit else f" and {len(manifest.skipped) - limit} more"
    return (
        f"{manifest.path}: {len(manifest.samples)} samples kept, {len(manifest.skipped)} skipped: "
        + ", ".join(ids)
        + more
    )


def build_manifest(
    records: Iterable[dict[str, Any]] | Iterable[tuple[int, dict[str, Any]]],
    path: str | os.PathLike[str],
    *,
    on_bad_sample: OnBad = "fail",
    check_images: bool = True,
    source: Path | None = None,
    where: str = "record",
) -> Manifest:
    """Validate raw records exactly as :func:`read_manifest` would and write the good ones.

    Importers produce raw records; routing them through the reader's validator keeps one set
    of rules. ``records`` are dicts (errors name their 1-based position), or ``(number,
    record)`` pairs whose numbers errors name as ``<source>: <where> <number>`` (the input
    table's own lines or rows).
    """
    mpath = Path(path)
    _format_of(mpath)
    # Relative image paths are checked from the manifest's folder, which must exist for that.
    mpath.parent.mkdir(parents=True, exist_ok=True)

    def numbered() -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
        for index, item in enumerate(records, start=1):
            number, record = item if isinstance(item, tuple) else (index, item)
            yield number, record, None if isinstance(record, dict) else "a row must be an object"

    staged = _validate(numbered(), mpath, where, on_bad_sample, check_images, label_path=source)
    write_manifest(staged.samples, mpath)
    return staged


def refuse_overwrite(path: Path) -> Path:
    """The resolved ``path`` for a new manifest; an existing file is never replaced.

    Resolved first, so that ``missing/../kept.jsonl`` is recognised as ``kept.jsonl``.
    """
    resolved = Path(path).resolve()
    if resolved.is_dir():
        raise PlanetlocError(f"{path}: --out must name a manifest file, and this is a folder")
    if resolved.exists():
        raise PlanetlocError(
            f"{path} already exists; nothing was overwritten (choose another --out or remove it)"
        )
    for parent in resolved.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PlanetlocError(f"{path}: {parent} is a file, not a folder")
            break
    return resolved


def split_counts(samples: Iterable[Sample]) -> dict[str, int]:
    """How many samples each split holds."""
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.split] = counts.get(s.split, 0) + 1
    return counts
