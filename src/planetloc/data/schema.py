"""The sample schema: the one contract between every stage of planetloc.

A sample is one ground-level description paired with the satellite tile of the place it
describes. Image paths are relative to the manifest that lists the sample.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

REQUIRED_FIELDS = ("id", "text", "sat_path", "lat", "lon", "region", "continent", "split")
OPTIONAL_FIELDS = ("street_path", "meta")
ALL_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS

# "gallery" marks distractor tiles that are searched but never queried; they carry no text.
SPLITS = ("train", "val", "test", "test_unseen", "gallery")


@dataclass
class Sample:
    """One row of a manifest."""

    id: str
    text: str
    sat_path: str
    lat: float
    lon: float
    region: str
    continent: str
    split: str
    street_path: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_record(record: dict[str, Any]) -> tuple[Sample | None, str | None]:
    """Turn a raw manifest row into a :class:`Sample`, or explain in one phrase what is wrong.

    Checks field presence, unknown fields, types, coordinate ranges, the split name and empty
    text. File-level checks (duplicates, images) are the manifest reader's.
    """
    missing = [f for f in REQUIRED_FIELDS if f not in record or record[f] is None]
    if missing:
        return None, f"missing field {missing[0]!r}"
    extra = sorted(set(record) - set(ALL_FIELDS))
    if extra:
        return None, f"unknown field {extra[0]!r} (put extra data under 'meta')"
    for name in ("id", "text", "sat_path", "region", "continent", "split"):
        if not isinstance(record[name], str):
            return None, f"field {name!r} must be a string, got {type(record[name]).__name__}"
    if not record["id"].strip():
        return None, "field 'id' is empty"
    coords = {}
    for name, bound in (("lat", 90.0), ("lon", 180.0)):
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"field {name!r} must be a number, got {value!r}"
        # Compare before converting: an integer too large for a float is simply out of range.
        if (isinstance(value, float) and math.isnan(value)) or not -bound <= value <= bound:
            return None, f"field {name!r} = {value} is outside [-{bound:g}, {bound:g}]"
        coords[name] = float(value)
    if record["split"] not in SPLITS:
        return None, f"field 'split' = {record['split']!r} is not one of {', '.join(SPLITS)}"
    if not record["text"].strip() and record["split"] != "gallery":
        return None, "field 'text' is empty"
    if not record["sat_path"].strip():
        return None, "field 'sat_path' is empty"
    street = record.get("street_path")
    if street is not None and not isinstance(street, str):
        return None, "field 'street_path' must be a string or null"
    meta = record.get("meta") or {}
    if not isinstance(meta, dict):
        return None, "field 'meta' must be an object"
    sample = Sample(
        id=record["id"],
        text=record["text"],
        sat_path=record["sat_path"],
        lat=coords["lat"],
        lon=coords["lon"],
        region=record["region"],
        continent=record["continent"],
        split=record["split"],
        street_path=street or None,
        meta=meta,
    )
    return sample, None
