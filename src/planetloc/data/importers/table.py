"""Import any CSV, JSONL or Parquet table into the sample schema through a column mapping.

The mapping names, for each schema field, the column that holds it (``{"text": "caption",
"lat": "latitude"}``); unmapped schema fields are looked up under their own name, and every
other column is kept under ``meta``. This is how CORE will be loaded the day it is published.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from planetloc.data.schema import OPTIONAL_FIELDS, REQUIRED_FIELDS
from planetloc.errors import PlanetlocError

NUMERIC = ("lat", "lon")


# A CSV field may hold a long description; the csv module's default cap is 128 KiB.
CSV_FIELD_LIMIT = 16 * 1024 * 1024


def _read_rows(path: Path) -> tuple[str, Iterator[tuple[int, dict[str, Any]]]]:
    """How rows are counted (``line`` or ``row``) and the rows with their 1-based numbers."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "line", _csv_rows(path)
    if suffix in (".jsonl", ".json"):
        return "line", _jsonl_rows(path)
    if suffix == ".parquet":
        return "row", _parquet_rows(path)
    raise PlanetlocError(f"{path}: unsupported table format {suffix!r} (csv, jsonl, parquet)")


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                yield reader.line_num, row
    except UnicodeDecodeError:
        raise PlanetlocError(f"{path}: file is not valid UTF-8") from None
    except csv.Error as err:
        raise PlanetlocError(f"{path}: line {reader.line_num}: unreadable CSV ({err})") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                raise PlanetlocError(f"{path}: line {lineno}: text is not valid UTF-8") from None
            except json.JSONDecodeError as err:
                raise PlanetlocError(f"{path}: line {lineno}: invalid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise PlanetlocError(f"{path}: line {lineno}: a row must be a JSON object")
            yield lineno, row


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except Exception as err:  # pyarrow raises several types for damaged files
        raise PlanetlocError(f"{path}: cannot read Parquet file ({err})") from None


def parse_mapping(pairs: list[str], *, values: bool = False) -> dict[str, str]:
    """``["text=caption", "lat=latitude"]`` -> ``{"text": "caption", "lat": "latitude"}``.

    With ``values`` the right-hand sides are field values (``--set split=test``), which may
    be empty.
    """
    mapping = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        what = "FIELD=VALUE" if values else "FIELD=COLUMN"
        if not sep or not field or (not column and not values):
            raise PlanetlocError(f"{pair!r} must look like {what}")
        if field not in REQUIRED_FIELDS + OPTIONAL_FIELDS:
            raise PlanetlocError(f"column mapping {pair!r}: {field!r} is not a schema field")
        mapping[field] = column
    return mapping


def import_table(
    table: str | os.PathLike[str],
    *,
    manifest_dir: str | os.PathLike[str],
    mapping: dict[str, str] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    defaults: dict[str, str] | None = None,
) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """Rows of ``table`` as schema records (validated later by the manifest reader).

    Returns how rows are counted (``line`` or ``row``) and ``(number, record)`` pairs whose
    1-based numbers are the table's own, so errors point into the input. Image paths are
    taken relative to ``image_root`` (default: the table's folder) and rewritten relative to
    ``manifest_dir``. ``defaults`` fills fields the table lacks (e.g. ``{"split": "test"}``).
    """
    path = Path(table)
    if not path.is_file():
        raise PlanetlocError(f"{path}: table not found")
    mapping = mapping or {}
    defaults = defaults or {}
    img_root = Path(image_root) if image_root else path.parent
    mdir = Path(manifest_dir).resolve()
    where, rows = _read_rows(path)
    records = []
    for number, row in rows:
        record: dict[str, Any] = {}
        used = set()
        for field in (*REQUIRED_FIELDS, "street_path"):
            column = mapping.get(field, field)
            # An empty text is a value (a gallery tile has none); other empty cells are absent.
            present = column in row and row[column] is not None
            if present and (row[column] != "" or field == "text"):
                record[field] = row[column]
                used.add(column)
            elif field in defaults:
                record[field] = defaults[field]
        for field in NUMERIC:
            if isinstance(record.get(field), str):
                try:
                    record[field] = float(record[field])
                except ValueError:
                    raise PlanetlocError(
                        f"{path}: {where} {number}: column {mapping.get(field, field)!r} = "
                        f"{record[field]!r} is not a number"
                    ) from None
        if "id" in record:
            record["id"] = str(record["id"])
        for field in ("sat_path", "street_path"):
            if isinstance(record.get(field), str):
                record[field] = os.path.relpath((img_root / record[field]).resolve(), mdir)
        meta = {k: v for k, v in row.items() if k not in used}
        if meta:
            record["meta"] = json.loads(json.dumps(meta, default=str))
        records.append((number, record))
    if not records:
        raise PlanetlocError(f"{path}: the table has no rows")
    return where, records
