"""Street panoramas: the direction convention, occlusion, sun shading and determinism."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

import numpy as np
import pytest

from planetloc.data.synth.describe import Observer
from planetloc.data.synth.render import Scene, render_scene
from planetloc.data.synth.street import (
    FACADE_LOOKS,
    StreetViewConfig,
    bearing_of_column,
    column_of_bearing,
    elevation_of_row,
    facade_material_index,
    perspective_view,
    render_panorama,
    row_of_elevation,
)
from planetloc.data.synth.style import FACADE_MATERIALS, derive_style
from planetloc.data.synth.world import BUILDING, NO_ROOF, ROAD, TREE, RegionMap, build_region_map
from planetloc.errors import PlanetlocError
from planetloc.geo.regions import get_region

N = 121  # map side, 1 m pixels; the observer stands at the centre cell
CENTRE = 60
CFG = StreetViewConfig(max_range_m=50.0, noise=0.0)
W, H = CFG.width, CFG.height


def _flat_map(albedo: float = 0.3) -> RegionMap:
    # A temperate city: crowns hang well above the eye on clear trunks.
    style = dataclasses.replace(
        derive_style(get_region("paris"), np.random.default_rng(0)), climate="temperate"
    )
    return RegionMap(
        gsd=1.0,
        cls=np.full((N, N), ROAD, dtype=np.uint8),
        height=np.zeros((N, N), dtype=np.float32),
        albedo=np.full((N, N, 3), albedo, dtype=np.float32),
        roof=np.full((N, N), NO_ROOF, dtype=np.uint8),
        major_road=np.zeros((N, N), dtype=bool),
        roundabout=np.zeros((N, N), dtype=bool),
        street_axis_deg=0.0,
        style=style,
    )


def _building(m: RegionMap, rows: slice, cols: slice, height: float) -> None:
    m.cls[rows, cols] = BUILDING
    m.height[rows, cols] = height
    m.roof[rows, cols] = 0
    m.albedo[rows, cols] = 0.5


def _scene(
    m: RegionMap, azimuth: float = 180.0, elevation: float = 40.0, shadow: np.ndarray | None = None
) -> Scene:
    return Scene(
        when=datetime(2023, 6, 21, 11, tzinfo=UTC),
        sun_azimuth_deg=azimuth,
        sun_elevation_deg=elevation,
        season="summer",
        image=m.albedo.copy(),
        shadow=np.zeros(m.shape, dtype=bool) if shadow is None else shadow,
    )


def _render(
    m: RegionMap, heading: float = 0.0, scene: Scene | None = None, seed: int = 0
) -> np.ndarray:
    obs = Observer(CENTRE, CENTRE, heading)
    return render_panorama(m, scene or _scene(m), obs, CFG, np.random.default_rng(seed))


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 6


def test_direction_helpers_follow_the_documented_convention() -> None:
    assert column_of_bearing(30.0, 30.0, 512) == pytest.approx(255.5)  # centre looks ahead
    assert column_of_bearing(120.0, 30.0, 512) == pytest.approx(255.5 + 128)  # right = clockwise
    assert column_of_bearing(300.0, 30.0, 512) == pytest.approx(255.5 - 128)
    for x in (-0.5, 0.0, 17.25, 300.0, 511.0):
        bearing = bearing_of_column(x, 250.0, 512)
        assert 0 <= bearing < 360
        assert column_of_bearing(bearing, 250.0, 512) == pytest.approx(x)
    # Equal angle per pixel both ways: 512 px = 360 degrees, so 128 rows span +-45 degrees.
    assert elevation_of_row(-0.5, 128, 512) == pytest.approx(45.0)
    assert elevation_of_row(127.5, 128, 512) == pytest.approx(-45.0)
    assert row_of_elevation(0.0, 128, 512) == pytest.approx(63.5)
    assert row_of_elevation(elevation_of_row(10.3, 128, 512), 128, 512) == pytest.approx(10.3)


def test_default_panorama_is_512_by_128_uint8_and_seeded() -> None:
    m = _flat_map()
    _building(m, slice(55, 66), slice(75, 81), 12.0)
    scene = _scene(m)
    obs = Observer(CENTRE, CENTRE, 10.0)
    a = render_panorama(m, scene, obs, rng=np.random.default_rng(5))
    b = render_panorama(m, scene, obs, rng=np.random.default_rng(5))
    c = render_panorama(m, scene, obs, rng=np.random.default_rng(6))
    assert a.shape == (128, 512, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    # Without a generator the standing point seeds one: still the same bytes every time.
    assert np.array_equal(render_panorama(m, scene, obs), render_panorama(m, scene, obs))


def test_empty_map_has_sky_above_the_horizon_and_ground_below() -> None:
    dark, light = _render(_flat_map(0.2)), _render(_flat_map(0.4))
    sky, ground = dark[: H // 2].astype(float), dark[H // 2 :].astype(float)
    assert (sky[..., 2] > sky[..., 0]).mean() > 0.9  # blue, but for the glow round the sun
    assert sky.mean() > ground.mean() + 40
    # Overhead is a deeper blue than the hazy horizon.
    assert sky[0, :, 2].mean() - sky[0, :, 0].mean() > sky[-1, :, 2].mean() - sky[-1, :, 0].mean()
    # Near the feet there is no haze: the ground's brightness follows its albedo.
    near = slice(H - 20, H)
    ratio = light[near].astype(float).mean() / dark[near].astype(float).mean()
    assert ratio == pytest.approx(2.0, rel=0.05)
    # Towards the horizon the ground fades into the sky's colour.
    horizon_gap = np.abs(dark[H // 2].astype(float) - dark[H // 2 - 1].astype(float)).mean()
    assert horizon_gap < 12


def test_tall_building_east_appears_at_bearing_90_and_rises_higher_than_a_low_one_west() -> None:
    empty = _render(_flat_map())
    m = _flat_map()
    _building(m, slice(50, 71), slice(80, 86), 12.0)  # west face 19.5 m east of the eye
    _building(m, slice(50, 71), slice(35, 41), 5.0)  # east face 19.5 m west of the eye
    pano = _render(m)
    changed = _changed(pano, empty)
    above = changed[: H // 2]
    east = round(column_of_bearing(90.0, 0.0, W))
    west = round(column_of_bearing(270.0, 0.0, W))
    assert above[:, east].sum() > 2 * above[:, west].sum() > 0
    # The tall one's top edge is where its height over the eye subtends at its distance.
    top = np.flatnonzero(above[:, east])[0]
    expected = row_of_elevation(math.degrees(math.atan((12.0 - 1.7) / 19.5)), H, W)
    assert abs(top - expected) <= 2
    # It spans the bearings of its two corners, centred on due east.
    cols = np.flatnonzero(above[H // 2 - 3])
    cols = cols[np.abs(cols - east) < 64]
    assert abs(cols.mean() - column_of_bearing(90.0, 0.0, W)) < 2
    half_width = math.degrees(math.atan(10.5 / 19.5))
    assert cols.max() - cols.min() == pytest.approx(2 * half_width * W / 360, abs=3)
    # Nothing shows in the directions where nothing stands.
    north, south = round(column_of_bearing(0.0, 0.0, W)), round(column_of_bearing(180.0, 0.0, W))
    assert not changed[:, north].any() and not changed[:, south].any()


def test_turning_the_heading_by_90_degrees_shifts_the_view_by_a_quarter() -> None:
    m = _flat_map()
    _building(m, slice(50, 71), slice(80, 86), 12.0)
    ahead, turned = _render(m, 0.0), _render(m, 90.0)
    same = np.all(turned == np.roll(ahead, -W // 4, axis=1), axis=2)
    assert same.mean() > 0.99
    c0 = np.flatnonzero(_changed(ahead, _render(_flat_map(), 0.0))[H // 2 - 3]).mean()
    c1 = np.flatnonzero(_changed(turned, _render(_flat_map(), 90.0))[H // 2 - 3]).mean()
    assert c0 - c1 == pytest.approx(W / 4, abs=1)


def _crown(m: RegionMap, row: int, col: int, radius: float, height: float) -> None:
    yy, xx = np.mgrid[: m.shape[0], : m.shape[1]]
    disc = (yy - row) ** 2 + (xx - col) ** 2 <= radius**2
    m.cls[disc] = TREE
    m.height[disc] = height
    m.albedo[disc] = m.style.canopy_rgb


def test_a_low_building_or_tree_behind_a_tall_one_is_hidden() -> None:
    m = _flat_map()
    _building(m, slice(45, 76), slice(75, 80), 20.0)
    front_only = _render(m)
    _building(m, slice(55, 66), slice(95, 100), 6.0)  # behind it, due east, lower in view
    _crown(m, 52, 92, 3, 8.0)
    assert np.array_equal(_render(m), front_only)
    alone = _flat_map()
    _building(alone, slice(55, 66), slice(95, 100), 6.0)
    _crown(alone, 52, 92, 3, 8.0)
    assert _changed(_render(alone), _render(_flat_map())).any()  # visible on its own


def _facade_brightness(pano: np.ndarray, bearing: float) -> float:
    col = round(column_of_bearing(bearing, 0.0, W))
    return float(pano[H // 2 - 12 : H // 2, col - 3 : col + 4].astype(float).mean())


def test_the_facade_facing_the_sun_is_brighter() -> None:
    m = _flat_map()
    _building(m, slice(50, 71), slice(80, 86), 12.0)  # its west face looks at the eye
    _building(m, slice(50, 71), slice(35, 41), 12.0)  # its east face looks at the eye
    morning = _render(m, scene=_scene(m, azimuth=90.0, elevation=30.0))
    evening = _render(m, scene=_scene(m, azimuth=270.0, elevation=30.0))
    assert _facade_brightness(morning, 270.0) > 1.4 * _facade_brightness(morning, 90.0)
    assert _facade_brightness(evening, 90.0) > 1.4 * _facade_brightness(evening, 270.0)


def test_ground_in_the_scene_shadow_is_darker() -> None:
    m = _flat_map()
    shadow = np.zeros(m.shape, dtype=bool)
    shadow[:CENTRE, :] = True  # everything north of the eye is in shade
    pano = _render(m, scene=_scene(m, shadow=shadow))
    rows = slice(H // 2 + 10, H)
    north = pano[rows, round(column_of_bearing(0.0, 0.0, W))].astype(float).mean()
    south = pano[rows, round(column_of_bearing(180.0, 0.0, W))].astype(float).mean()
    assert north < 0.8 * south


def test_a_tree_is_a_green_crown_on_a_trunk_with_the_view_open_beneath() -> None:
    m = _flat_map()
    _crown(m, CENTRE, CENTRE + 12, 3, 10.0)  # 3 m radius, 12 m east
    empty, pano = _render(_flat_map()), _render(m)
    east = round(column_of_bearing(90.0, 0.0, W))
    leaves = pano[H // 2 - 25 : H // 2 - 15, east - 3 : east + 4].astype(float)
    assert (leaves[..., 1] > leaves[..., 0]).mean() > 0.9  # green
    # Beside the trunk, below the crown, the ground behind the tree shows through.
    beside = east + 6
    rows = slice(H // 2 - 2, H // 2 + 2)
    assert np.array_equal(pano[rows, beside], empty[rows, beside])
    assert _changed(pano, empty)[H // 2 + 3, east]  # the trunk itself


def test_standing_under_a_crown_its_leaves_close_the_sky_overhead() -> None:
    m = _flat_map()
    _crown(m, CENTRE, CENTRE, 6, 12.0)
    pano = _render(m)
    overhead = pano[:10].astype(float)  # 38 to 45 degrees up, every direction
    assert (overhead[..., 1] > overhead[..., 2]).mean() > 0.95  # leaves, not blue sky
    assert overhead.mean() < 0.5 * _render(_flat_map())[:10].astype(float).mean()


def test_a_facade_shows_one_row_of_windows_per_storey() -> None:
    m = _flat_map()
    _building(m, slice(40, 81), slice(70, 76), 30.0)  # west face 9.5 m east of the eye
    pano = _render(m).astype(float).sum(axis=2)
    east = round(column_of_bearing(90.0, 0.0, W))
    # Rows of the facade from its foot (z = 0) up to the top of the image (z = 11.2 m).
    foot = round(row_of_elevation(math.degrees(math.atan(-1.7 / 9.5)), H, W))
    best = 0
    for col in range(east - 12, east + 13):
        profile = pano[:foot, col]
        dark = profile < 0.8 * np.median(profile)
        best = max(best, int(np.count_nonzero(dark[1:] & ~dark[:-1]) + dark[0]))
    assert best == math.ceil(11.2 / CFG.storey_m)


def test_a_building_at_the_maximum_range_melts_into_the_sky() -> None:
    empty = _render(_flat_map()).astype(int)
    far, near = _flat_map(), _flat_map()
    _building(far, slice(40, 81), slice(CENTRE + 49, CENTRE + 55), 40.0)  # 48.5 m: range 50
    _building(near, slice(40, 81), slice(CENTRE + 25, CENTRE + 31), 40.0)
    assert np.abs(_render(far).astype(int) - empty).max() <= 8
    assert np.abs(_render(near).astype(int) - empty).max() > 60


def test_rays_leaving_the_map_end_in_haze() -> None:
    m = _flat_map(0.15)
    obs = Observer(2, CENTRE, 0.0)  # two metres from the northern edge, facing off the map
    pano = render_panorama(m, _scene(m), obs, CFG, np.random.default_rng(0))
    north, south = round(column_of_bearing(0.0, 0.0, W)), round(column_of_bearing(180.0, 0.0, W))
    haze = pano[H // 2 - 1, north].astype(float)  # the sky at the horizon
    off_map = pano[H // 2 + 8, north].astype(float)
    on_map = pano[H // 2 + 8, south].astype(float)
    assert np.abs(off_map - haze).max() <= 3
    assert on_map.mean() < off_map.mean() - 60


def test_a_window_of_the_map_renders_the_same_panorama() -> None:
    m = _flat_map()
    _building(m, slice(50, 71), slice(80, 86), 12.0)
    _crown(m, 40, 50, 3, 9.0)
    whole = _render(m, 30.0)
    r0, c0 = 5, 3
    part = dataclasses.replace(
        m,
        cls=m.cls[r0:, c0:],
        height=m.height[r0:, c0:],
        albedo=m.albedo[r0:, c0:],
        roof=m.roof[r0:, c0:],
        major_road=m.major_road[r0:, c0:],
        roundabout=m.roundabout[r0:, c0:],
        origin=(r0, c0),
        region_shape=m.shape,
    )
    scene = _scene(part)
    obs = Observer(CENTRE - r0, CENTRE - c0, 30.0)
    window = render_panorama(part, scene, obs, CFG, np.random.default_rng(0))
    assert np.array_equal(window, whole)


def test_perspective_view_keeps_the_yaw_direction_in_its_centre() -> None:
    pano = np.zeros((128, 512, 3), dtype=np.uint8)
    pano[:, 255:257, 0] = 255  # straight ahead
    ahead = round(column_of_bearing(30.0, 0.0, 512))
    pano[:, ahead : ahead + 1, 1] = 255  # 30 degrees to the right
    view = perspective_view(pano, yaw_deg=0.0, fov_deg=90.0, width=256, height=256)
    assert view.shape == (256, 256, 3) and view.dtype == np.uint8
    red = view[128, :, 0].astype(float)
    assert red[127] > 200 and red[128] > 200 and red[:100].max() == 0 and red[160:].max() == 0
    # A pinhole camera puts a direction at tan(angle) * focal length from the centre.
    green = view[128, :, 1].astype(float)
    expected = 128 + 128 * math.tan(math.radians(30.0 + 0.5 * 360 / 512)) - 0.5
    assert abs(np.average(np.arange(256), weights=green) - expected) < 1.5
    pano[:, 382:386, 2] = 255  # due right, 90 degrees
    turned = perspective_view(pano, yaw_deg=90.0, width=64, height=64)
    assert turned[32, 31:33, 2].min() > 250 and turned[32, :, 0].max() == 0
    with pytest.raises(PlanetlocError, match="beyond the panorama"):
        perspective_view(pano, fov_deg=90.0, width=100, height=300)


def test_bad_inputs_are_refused_with_one_line() -> None:
    m = _flat_map()
    scene = _scene(m)
    with pytest.raises(PlanetlocError, match="outside the 121x121 region map"):
        render_panorama(m, scene, Observer(200, 5, 0.0))
    with pytest.raises(PlanetlocError, match="heading"):
        render_panorama(m, scene, Observer(5, 5, float("nan")))
    with pytest.raises(PlanetlocError, match="height"):
        render_panorama(m, scene, Observer(5, 5, 0.0), StreetViewConfig(width=64, height=40))
    with pytest.raises(PlanetlocError, match="max_range_m"):
        render_panorama(m, scene, Observer(5, 5, 0.0), StreetViewConfig(max_range_m=math.inf))


def test_every_facade_material_of_the_styles_has_a_look() -> None:
    names = {name for materials in FACADE_MATERIALS.values() for name in materials}
    assert names <= set(FACADE_LOOKS)


def test_a_building_has_one_material_and_the_city_uses_them_all() -> None:
    rng = np.random.default_rng(0)
    heights = rng.uniform(3, 60, size=400).astype(np.float32)
    roofs = rng.integers(0, 12, size=400)
    index = facade_material_index(heights, roofs, 4)
    assert np.array_equal(index, facade_material_index(heights.copy(), roofs.copy(), 4))
    # Every cell of one building (same height and roof) gets its building's material.
    assert len(set(facade_material_index(np.full(50, 12.5), np.full(50, 3), 4))) == 1
    counts = np.bincount(index, minlength=4)
    assert counts.min() > 60 and counts.sum() == 400


def test_a_generated_region_shows_its_buildings_and_trees() -> None:
    region = get_region("paris")
    rng = np.random.default_rng(3)
    style = derive_style(region, rng)
    m = build_region_map(style, rng, extent_m=360.0, gsd=1.5)
    scene = render_scene(m, region.lat, region.lon, datetime(2023, 7, 1, 10, tzinfo=UTC), rng)
    roads = np.argwhere(m.cls == ROAD)
    row, col = roads[np.argmin(np.abs(roads - np.asarray(m.shape) / 2).sum(axis=1))]
    obs = Observer(int(row), int(col), 0.0)
    pano = render_panorama(m, scene, obs, rng=np.random.default_rng(0))
    flat = dataclasses.replace(m, height=np.zeros_like(m.height))
    open_sky = render_panorama(flat, scene, obs, rng=np.random.default_rng(0))
    standing = _changed(pano, open_sky)[: H // 2].mean()
    assert standing > 0.1  # buildings and crowns block a good share of the sky
    upper = pano[: H // 2][_changed(pano, open_sky)[: H // 2]].astype(float)
    assert (
        len(np.unique(upper // 16, axis=0)) > 20
    )  # facades, windows and leaves, not one flat tone
