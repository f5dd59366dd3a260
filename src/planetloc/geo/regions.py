"""The catalog of 225 real regions and the continent groups behind the intercontinental subsets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from planetloc.errors import PlanetlocError

CONTINENTS = ("Africa", "Asia", "Europe", "North America", "Oceania", "South America")

# The paper reports four intercontinental subsets without naming their members; these groups
# split the six inhabited continents into four test sets of comparable size.
CONTINENT_GROUPS: dict[str, tuple[str, ...]] = {
    "subset1": ("Asia",),
    "subset2": ("Europe",),
    "subset3": ("North America", "South America"),
    "subset4": ("Africa", "Oceania"),
}


@dataclass(frozen=True)
class Region:
    """A city-sized region: centre, bounding box ``(west, south, east, north)`` and labels."""

    name: str
    slug: str
    country: str
    country_code: str
    continent: str
    lat: float
    lon: float
    population: int
    bbox: tuple[float, float, float, float]


@cache
def load_catalog() -> tuple[Region, ...]:
    """All regions shipped with the package, most populous first."""
    text = resources.files("planetloc.geo").joinpath("data/regions.json").read_text("utf-8")
    rows = json.loads(text)["regions"]
    return tuple(
        Region(
            name=r["name"],
            slug=r["slug"],
            country=r["country"],
            country_code=r["country_code"],
            continent=r["continent"],
            lat=float(r["lat"]),
            lon=float(r["lon"]),
            population=int(r["population"]),
            bbox=tuple(float(v) for v in r["bbox"]),
        )
        for r in rows
    )


def get_region(name_or_slug: str) -> Region:
    """Look a region up by slug or (case-insensitive) name."""
    key = name_or_slug.strip().lower()
    for region in load_catalog():
        if region.slug == key or region.name.lower() == key:
            return region
    raise PlanetlocError(f"unknown region {name_or_slug!r} (see `planetloc regions`)")


def continent_group(continent: str) -> str:
    """The intercontinental subset a continent belongs to."""
    for group, members in CONTINENT_GROUPS.items():
        if continent in members:
            return group
    raise PlanetlocError(f"continent {continent!r} is in no intercontinental subset")


def select_regions(n: int) -> list[Region]:
    """``n`` regions spread over the continents in proportion to the catalog, deterministic.

    Takes regions round-robin by continent (most populous first within each) so that even a
    small world covers every continent.
    """
    catalog = load_catalog()
    if not 1 <= n <= len(catalog):
        raise PlanetlocError(f"--regions must be between 1 and {len(catalog)}, got {n}")
    by_cont = {c: [r for r in catalog if r.continent == c] for c in CONTINENTS}
    total = len(catalog)
    picked: list[Region] = []
    taken = dict.fromkeys(CONTINENTS, 0)
    while len(picked) < n:
        # Next continent: the one furthest below its catalog share.
        cont = min(
            (c for c in CONTINENTS if taken[c] < len(by_cont[c])),
            key=lambda c: (taken[c] / len(by_cont[c]), -len(by_cont[c]) / total),
        )
        picked.append(by_cont[cont][taken[cont]])
        taken[cont] += 1
    return picked


def catalog_rows(continent: str | None = None) -> list[dict[str, object]]:
    """The catalog as plain rows (with each region's subset), optionally one continent's."""
    rows = [
        r.__dict__ | {"subset": continent_group(r.continent)}
        for r in load_catalog()
        if not continent or r.continent.lower() == continent.lower()
    ]
    if not rows:
        raise PlanetlocError(
            f"no region on continent {continent!r}; continents: {', '.join(CONTINENTS)}"
        )
    return rows
