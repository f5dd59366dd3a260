"""Import any CSV, JSONL or Parquet table into the sample schema through a column mapping.

The mapping names, for each schema field, the column that holds it (``{"text": "caption",
"lat": "latitude"}``); unmapped schema fields are looked up under their own name, and every
other column is kept under ``meta``. This is how CORE will be loaded the day it is published.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from planetloc.data.schema import OPTIONAL_FIELDS, REQUIRED_FIELDS
from planetloc.errors import PlanetlocError

NUMERIC = ("lat", "lon")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                return list(csv.DictReader(fh))
        except UnicodeDecodeError:
            raise PlanetlocError(f"{path}: file is not valid UTF-8") from None
    if suffix in (".jsonl", ".json"):
        rows = []
        for lineno, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line.decode("utf-8")))
            except UnicodeDecodeError:
                raise PlanetlocError(f"{path}: line {lineno}: text is not valid UTF-8") from None
            except json.JSONDecodeError as err:
                raise PlanetlocError(f"{path}: line {lineno}: invalid JSON ({err.msg})") from None
        return rows
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    raise PlanetlocError(f"{path}: unsupported table format {suffix!r} (csv, jsonl, parquet)")


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``["text=caption", "lat=latitude"]`` -> ``{"text": "caption", "lat": "latitude"}``."""
    mapping = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field or not column:
            raise PlanetlocError(f"column mapping {pair!r} must look like FIELD=COLUMN")
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
) -> list[dict[str, Any]]:
    """Rows of ``table`` as schema records (validated later by the manifest reader).

    Image paths in the table are taken relative to ``image_root`` (default: the table's
    folder) and rewritten relative to ``manifest_dir``. ``defaults`` fills fields the table
    lacks (e.g. ``{"split": "test"}``).
    """
    path = Path(table)
    if not path.is_file():
        raise PlanetlocError(f"{path}: table not found")
    mapping = mapping or {}
    defaults = defaults or {}
    img_root = Path(image_root) if image_root else path.parent
    mdir = Path(manifest_dir).resolve()
    records = []
    for index, row in enumerate(_read_rows(path)):
        record: dict[str, Any] = {}
        used = set()
        for field in (*REQUIRED_FIELDS, "street_path"):
            column = mapping.get(field, field)
            if column in row and row[column] not in (None, ""):
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
                        f"{path}: row {index}: column {mapping.get(field, field)!r} = "
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
        records.append(record)
    return records
