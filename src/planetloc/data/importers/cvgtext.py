"""Import a CVG-Text tree into the sample schema.

CVG-Text ships one JSON annotation file per split, a dict ``{image_filename: caption}``; the
satellite tile of a sample has the same filename as its street-view image, and the filename
encodes where and when it was taken: ``lat,lon_YYYY-MM_panoid_dYAW_zZOOM.jpg``. Expected tree::

    ROOT/annotation/<City>/{train,val,test}.json
    ROOT/images/<City>/satellite/<filename>
    ROOT/images/<City>/streetview/<filename>        (optional)

A ``single`` or ``panorama`` word in the annotation file's name or folder marks the view type;
otherwise ``view`` decides.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from planetloc.data.schema import Sample
from planetloc.errors import PlanetlocError

FILENAME_RE = re.compile(
    r"^(?P<lat>-?\d+(?:\.\d+)?),(?P<lon>-?\d+(?:\.\d+)?)_(?P<date>\d{4}-\d{2})_"
    r"(?P<panoid>.+?)_d(?P<yaw>-?\d+(?:\.\d+)?)_z(?P<zoom>\d+)\.(?:jpe?g|png)$",
    re.IGNORECASE,
)
CITY_CONTINENT = {
    "newyork": "North America",
    "new york": "North America",
    "brisbane": "Oceania",
    "tokyo": "Asia",
}
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def parse_filename(name: str) -> dict[str, Any]:
    """Coordinates, capture month, panorama id, yaw and zoom encoded in a CVG-Text filename."""
    match = FILENAME_RE.match(os.path.basename(name))
    if match is None:
        raise PlanetlocError(
            f"{name!r}: filename does not match 'lat,lon_YYYY-MM_panoid_dYAW_zZOOM.jpg'"
        )
    return {
        "lat": float(match["lat"]),
        "lon": float(match["lon"]),
        "date": match["date"],
        "panoid": match["panoid"],
        "yaw": float(match["yaw"]),
        "zoom": int(match["zoom"]),
    }


def _view_of(path: Path, default: str) -> str:
    lowered = str(path).lower()
    if "single" in lowered:
        return "single"
    if "pano" in lowered:
        return "panorama"
    return default


def _split_of(path: Path) -> str:
    for word in re.split(r"[^a-z]+", path.stem.lower()):
        if word in SPLIT_NAMES:
            return SPLIT_NAMES[word]
    raise PlanetlocError(f"{path}: cannot tell the split from the file name (want train/val/test)")


def import_cvgtext(
    root: str | os.PathLike[str],
    *,
    manifest_dir: str | os.PathLike[str],
    cities: list[str] | None = None,
    view: str = "panorama",
) -> list[Sample]:
    """Samples for every annotated image under ``root``, paths relative to ``manifest_dir``."""
    base = Path(root)
    ann_root = base / "annotation"
    if not ann_root.is_dir():
        raise PlanetlocError(f"{ann_root}: annotation folder not found (is this a CVG-Text tree?)")
    city_dirs = sorted(p for p in ann_root.iterdir() if p.is_dir())
    if cities:
        wanted = {c.lower() for c in cities}
        city_dirs = [p for p in city_dirs if p.name.lower() in wanted]
        if not city_dirs:
            raise PlanetlocError(f"{ann_root}: none of the cities {cities} found")
    out: list[Sample] = []
    mdir = Path(manifest_dir).resolve()
    for city_dir in city_dirs:
        city = city_dir.name
        sat_dir = base / "images" / city / "satellite"
        street_dir = base / "images" / city / "streetview"
        for ann in sorted(city_dir.rglob("*.json")):
            split = _split_of(ann)
            try:
                captions = json.loads(ann.read_text(encoding="utf-8"))
            except UnicodeDecodeError:
                raise PlanetlocError(f"{ann}: annotation is not valid UTF-8") from None
            except json.JSONDecodeError as err:
                raise PlanetlocError(
                    f"{ann}: invalid JSON ({err.msg}, line {err.lineno})"
                ) from None
            if not isinstance(captions, dict):
                raise PlanetlocError(f"{ann}: expected a JSON object {{filename: caption}}")
            kind = _view_of(ann.relative_to(ann_root), view)
            for filename, caption in captions.items():
                info = parse_filename(filename)
                sat = sat_dir / filename
                street = street_dir / filename
                out.append(
                    Sample(
                        id=f"{city}/{kind}/{Path(filename).stem}",
                        text=caption if isinstance(caption, str) else "",
                        sat_path=os.path.relpath(sat.resolve(), mdir),
                        street_path=(
                            os.path.relpath(street.resolve(), mdir) if street.exists() else None
                        ),
                        lat=info["lat"],
                        lon=info["lon"],
                        region=city,
                        continent=CITY_CONTINENT.get(city.lower(), "unknown"),
                        split=split,
                        meta={"view": kind, "source": "cvg-text", **info},
                    )
                )
    if not out:
        raise PlanetlocError(f"{ann_root}: no annotations found")
    return out
