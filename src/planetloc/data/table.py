"""A manifest's metadata as columns: what evaluation and indexing read about many samples.

A million samples as Python objects would cost gigabytes; as numpy columns (text and paths
as object arrays, coordinates as float64) they cost a few hundred megabytes, and rows can be
selected by split while the manifest streams past.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planetloc.data.manifest import find_manifest, iter_rows
from planetloc.data.schema import Sample, check_record
from planetloc.errors import PlanetlocError

TEXT_COLUMNS = ("id", "text", "sat_path", "street_path", "region", "continent", "split")


@dataclass
class SampleTable:
    """Columns of the kept rows of a manifest (row i of every column is one sample)."""

    path: Path
    id: np.ndarray
    text: np.ndarray
    sat_path: np.ndarray
    street_path: np.ndarray
    region: np.ndarray
    continent: np.ndarray
    split: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    heading: np.ndarray  # meta.heading_deg, NaN when absent
    meta: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.id)

    @property
    def root(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """Absolute path of an image path stored in the manifest."""
        return self.root / relative

    def rows(self, *splits: str) -> np.ndarray:
        """Row numbers of the given splits, in manifest order."""
        return np.flatnonzero(np.isin(self.split, list(splits)))

    def latlon(self, rows: np.ndarray | None = None) -> np.ndarray:
        lat, lon = (self.lat, self.lon) if rows is None else (self.lat[rows], self.lon[rows])
        return np.stack([lat, lon], axis=1)

    def sample(self, row: int) -> Sample:
        return Sample(
            id=str(self.id[row]),
            text=str(self.text[row]),
            sat_path=str(self.sat_path[row]),
            lat=float(self.lat[row]),
            lon=float(self.lon[row]),
            region=str(self.region[row]),
            continent=str(self.continent[row]),
            split=str(self.split[row]),
            street_path=self.street_path[row],
            meta=self.meta[row] if self.meta is not None else {},
        )


def read_table(
    data: str | os.PathLike[str],
    *,
    splits: tuple[str, ...] | None = None,
    with_meta: bool = False,
    meta_keys: tuple[str, ...] | None = None,
) -> SampleTable:
    """Columns of the manifest of ``data`` (rows of ``splits`` only), validated row by row.

    ``with_meta`` keeps each row's ``meta`` (only ``meta_keys`` of it when given: a million
    full ``meta`` objects would not fit where their few needed keys do).
    """
    path = find_manifest(data)
    where = "line" if path.suffix == ".jsonl" else "row"
    cols: dict[str, list[Any]] = {k: [] for k in (*TEXT_COLUMNS, "lat", "lon", "heading")}
    metas: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row, record, problem in iter_rows(path):
        if problem is None:
            sample, problem = check_record(record)  # type: ignore[arg-type]
        if problem is not None:
            sid = record.get("id") if isinstance(record, dict) else None
            label = f" (id={sid!r})" if isinstance(sid, str) else ""
            raise PlanetlocError(f"{path}: {where} {row}{label}: {problem}")
        assert sample is not None
        if splits is not None and sample.split not in splits:
            continue
        if sample.id in seen:
            raise PlanetlocError(f"{path}: {where} {row} (id={sample.id!r}): duplicate id")
        seen.add(sample.id)
        for name in TEXT_COLUMNS:
            cols[name].append(getattr(sample, name if name != "id" else "id"))
        cols["lat"].append(sample.lat)
        cols["lon"].append(sample.lon)
        heading = sample.meta.get("heading_deg") if isinstance(sample.meta, dict) else None
        cols["heading"].append(float(heading) if isinstance(heading, int | float) else np.nan)
        if with_meta:
            meta = sample.meta if isinstance(sample.meta, dict) else {}
            metas.append(
                meta if meta_keys is None else {k: meta[k] for k in meta_keys if k in meta}
            )
    seen.clear()

    def objects(values: list[Any]) -> np.ndarray:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    return SampleTable(
        path=path,
        **{name: objects(cols[name]) for name in TEXT_COLUMNS},
        lat=np.asarray(cols["lat"], dtype=np.float64),
        lon=np.asarray(cols["lon"], dtype=np.float64),
        heading=np.asarray(cols["heading"], dtype=np.float64),
        meta=metas if with_meta else None,
    )
