"""Coordinates, the sun and the region catalog."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from planetloc.errors import PlanetlocError
from planetloc.geo.coords import haversine_m, offset_latlon
from planetloc.geo.regions import (
    CONTINENT_GROUPS,
    CONTINENTS,
    continent_group,
    get_region,
    load_catalog,
    select_regions,
)
from planetloc.geo.sun import solar_position


def test_haversine_matches_known_distances() -> None:
    # Paris (Notre-Dame) to London (Trafalgar Square): about 342.5 km.
    assert haversine_m(48.853, 2.3499, 51.508, -0.128) == pytest.approx(342_500, rel=0.005)
    assert haversine_m(0, 0, 0, 1) == pytest.approx(111_195, rel=1e-3)
    assert haversine_m(10, 20, 10, 20) == 0


def test_offset_latlon_is_metric() -> None:
    lat, lon = offset_latlon(-33.87, 151.21, east_m=300.0, north_m=-400.0)
    assert haversine_m(-33.87, 151.21, lat, lon) == pytest.approx(500.0, abs=0.5)
    assert lat < -33.87 and lon > 151.21


def test_sun_is_south_at_noon_in_new_york_summer_and_north_in_sydney_winter() -> None:
    az, el = solar_position(40.71, -74.0, datetime(2024, 6, 21, 16, 56, tzinfo=UTC))
    assert az == pytest.approx(180, abs=3) and el == pytest.approx(72.7, abs=1.0)
    az, el = solar_position(-33.87, 151.21, datetime(2024, 6, 21, 1, 57, tzinfo=UTC))
    assert min(az, 360 - az) < 3 and el == pytest.approx(32.7, abs=1.0)
    az, _ = solar_position(40.71, -74.0, datetime(2024, 6, 21, 13, 0, tzinfo=UTC))
    assert 60 < az < 120  # mid-morning sun stands in the east


def test_catalog_has_225_regions_on_all_six_inhabited_continents() -> None:
    catalog = load_catalog()
    assert len(catalog) == 225
    assert {r.continent for r in catalog} == set(CONTINENTS)
    assert len({r.slug for r in catalog}) == 225
    for r in catalog:
        west, south, east, north = r.bbox
        assert west < r.lon < east and south < r.lat < north, r.slug
        assert -90 <= r.lat <= 90 and -180 <= r.lon <= 180
    counts = {c: sum(r.continent == c for r in catalog) for c in CONTINENTS}
    assert min(counts.values()) >= 20


def test_continent_groups_partition_the_continents() -> None:
    members = [c for group in CONTINENT_GROUPS.values() for c in group]
    assert sorted(members) == sorted(CONTINENTS)
    assert continent_group("Oceania") == "subset4"


def test_region_selection_is_spread_and_deterministic() -> None:
    six = select_regions(6)
    assert {r.continent for r in six} == set(CONTINENTS)
    thirty = select_regions(30)
    assert thirty[:6] == six  # a larger world adds regions; it never reshuffles the first ones
    catalog = load_catalog()
    for continent in CONTINENTS:
        share = sum(r.continent == continent for r in catalog) / len(catalog)
        assert abs(sum(r.continent == continent for r in thirty) - 30 * share) <= 1
    assert get_region("Tokyo").country_code == "JP"
    with pytest.raises(PlanetlocError, match="unknown region 'Atlantis'"):
        get_region("Atlantis")
    with pytest.raises(PlanetlocError, match="between 1 and 225"):
        select_regions(0)


def test_haversine_broadcasts() -> None:
    d = haversine_m(np.zeros(3), np.zeros(3), np.array([0, 0, 1.0]), np.array([1.0, 2.0, 0]))
    assert d.shape == (3,) and d[1] == pytest.approx(2 * d[0])
