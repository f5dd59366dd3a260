"""Dataset builder pieces that need no server: sampling, tile geometry, local imagery sources,
description checks, configuration, splits."""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import pytest
from PIL import Image

from planetloc.builder import satellite, streetview
from planetloc.builder.config import (
    BuildConfig,
    DescribeConfig,
    SampleConfig,
    SatelliteConfig,
    StreetViewConfig,
    load_build_config,
)
from planetloc.builder.describe import check_description, place_names
from planetloc.builder.fetch import Redactor, TokenBucket, parse_retry_after
from planetloc.builder.loopback import pattern
from planetloc.builder.prompt import load_prompt
from planetloc.builder.sampling import read_points_file, resolve_regions, sample_region
from planetloc.builder.write import held_out_regions
from planetloc.errors import PlanetlocError
from planetloc.geo import webmercator as wm
from planetloc.geo.coords import haversine_m, offset_latlon
from planetloc.geo.regions import get_region

# --- sampling ------------------------------------------------------------------------------


def test_sampling_is_deterministic_on_land_spaced_and_within_quota() -> None:
    region = get_region("cape-town-za")  # 43% of its bounding box is sea
    cfg = SampleConfig(per_region=40, min_spacing_m=300.0, seed=3)
    points = sample_region(region, cfg)
    assert points == sample_region(region, cfg)
    assert points != sample_region(region, SampleConfig(per_region=40, min_spacing_m=300, seed=4))
    assert len(points) == 40
    assert len({p.id for p in points}) == 40
    from global_land_mask import globe

    lat = np.array([p.lat for p in points])
    lon = np.array([p.lon for p in points])
    assert globe.is_land(lat, lon).all()
    anywhere = sample_region(region, SampleConfig(per_region=40, land_only=False, seed=3))
    assert not globe.is_land(
        np.array([p.lat for p in anywhere]), np.array([p.lon for p in anywhere])
    ).all()
    west, south, east, north = region.bbox
    assert ((lat >= south) & (lat <= north) & (lon >= west) & (lon <= east)).all()
    dist = haversine_m(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    np.fill_diagonal(dist, np.inf)
    assert dist.min() >= 300.0


def test_sampling_quota_shortfall_when_spacing_cannot_fit() -> None:
    region = get_region("cape-town-za")
    points = sample_region(region, SampleConfig(per_region=500, min_spacing_m=5000.0))
    assert 0 < len(points) < 500


def test_region_selection_by_name_continent_and_all() -> None:
    assert {r.slug for r in resolve_regions(["Tokyo", "lagos-ng", "tokyo-jp"])} == {
        "tokyo-jp",
        "lagos-ng",
    }
    oceania = resolve_regions(["oceania"])
    assert len(oceania) == 20 and {r.continent for r in oceania} == {"Oceania"}
    assert len(resolve_regions(["all"])) == 225
    with pytest.raises(PlanetlocError, match="unknown region 'Atlantis'"):
        resolve_regions(["Atlantis"])


def test_points_file_restricts_candidates(tmp_path) -> None:
    region = get_region("tokyo")
    lat, lon = offset_latlon(region.lat, region.lon, np.arange(30) * 400.0, np.zeros(30))
    rows = ["lat,lon"] + [f"{a},{b}" for a, b in zip(lat, lon, strict=True)] + ["10.0,10.0"]
    csv = tmp_path / "points.csv"
    csv.write_text("\n".join(rows) + "\n")
    listed = {(round(a, 7), round(b, 7)) for a, b in zip(lat, lon, strict=True)}
    cfg = SampleConfig(per_region=10, min_spacing_m=700.0, land_only=False)
    points = sample_region(region, cfg, read_points_file(csv))
    assert len(points) == 10
    assert all((p.lat, p.lon) in listed for p in points)
    geojson = tmp_path / "points.geojson"
    features = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [b, a]}}
        for a, b in zip(lat, lon, strict=True)
    ]
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    assert np.allclose(read_points_file(geojson), read_points_file(csv)[:-1])
    bad = tmp_path / "bad.csv"
    bad.write_text("lat,lon\n1.0,2.0\nnorth,3\n")
    with pytest.raises(PlanetlocError, match=r"bad.csv: line 3: lat/lon 'north'"):
        read_points_file(bad)


# --- tile geometry -------------------------------------------------------------------------


def test_web_mercator_reference_values() -> None:
    assert wm.metres_per_pixel(0.0, 0) == pytest.approx(156543.03392, rel=1e-9)
    assert wm.quadkey(3, 5, 3) == "213"  # the example in Bing Maps' tile system docs
    x, y = wm.latlon_to_pixel(51.5, -0.12, 15)
    assert wm.pixel_to_latlon(x, y, 15) == pytest.approx((51.5, -0.12), abs=1e-9)
    assert wm.latlon_to_pixel(0.0, 0.0, 1) == (256.0, 256.0)


def test_url_templates_xyz_tms_quadkey_wmts_and_subdomains(monkeypatch) -> None:
    monkeypatch.setenv("TILE_KEY", "k123")
    redactor = Redactor()
    make = satellite.XYZSource
    cfg = SatelliteConfig(url="https://{s}.t/{z}/{x}/{-y}.png?key={key}", key_env="TILE_KEY")
    cfg.subdomains = ["a", "b"]
    assert make(cfg, BuildConfig().http, redactor).url(3, 1, 2) == "https://b.t/3/1/5.png?key=k123"
    assert redactor("https://b.t/3/1/5.png?key=k123") == "https://b.t/3/1/5.png?key=***"
    cfg = SatelliteConfig(url="https://t/{q}.jpeg")
    assert make(cfg, BuildConfig().http, redactor).url(3, 3, 5) == "https://t/213.jpeg"
    cfg = SatelliteConfig(url="https://t/wmts/{TileMatrix}/{TileRow}/{TileCol}")
    assert make(cfg, BuildConfig().http, redactor).url(7, 10, 20) == "https://t/wmts/7/20/10"
    with pytest.raises(PlanetlocError, match="TILE_MISSING is not set"):
        make(SatelliteConfig(url="https://t/{z}/{x}/{y}", key_env="TILE_MISSING"),
             BuildConfig().http, redactor)  # fmt: skip


def _georeferenced_png(tmp_path, crs: str) -> tuple[float, float]:
    """A 400x400 image of the loopback pattern covering about 800 m around a point."""
    lat0, lon0 = 48.85, 2.35
    gx, gy = np.meshgrid(np.arange(400) + 0.5, np.arange(400) + 0.5)
    Image.fromarray(pattern(gx * 3, gy * 3)).save(tmp_path / "ortho.png")
    if crs == "EPSG:4326":
        (south, north), (west, east) = offset_latlon(lat0, lon0, [-400, 400], [-400, 400])
        sx, sy = (east - west) / 400, (north - south) / 400
        x0, y0 = west, north
    else:
        cx, cy = wm.lonlat_to_mercator(lat0, lon0)
        half = 400 * wm.ground_to_mercator_scale(lat0)
        sx = sy = 2 * half / 400
        x0, y0 = cx - half, cy + half
    world = [sx, 0.0, 0.0, -sy, x0 + sx / 2, y0 - sy / 2]
    (tmp_path / "ortho.pgw").write_text("\n".join(repr(float(v)) for v in world))
    return lat0, lon0


@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:3857"])
def test_local_georeferenced_folder_crops_the_right_place(tmp_path, crs) -> None:
    lat0, lon0 = _georeferenced_png(tmp_path, crs)
    cfg = SatelliteConfig(provider="local", folder=str(tmp_path), crs=crs, size_m=200, pixels=100)
    source = satellite.LocalSource(cfg)
    data, meta = asyncio.run(source.fetch(lat0, lon0))
    got = np.asarray(Image.open(__import__("io").BytesIO(data)), dtype=np.float64)
    # 200 m of the 800 m image around its centre = source pixels 150..250.
    gx, gy = np.meshgrid(np.arange(100) + 150.5, np.arange(100) + 150.5)
    expected = pattern(gx * 3, gy * 3).astype(np.float64)
    assert np.abs(got - expected).mean() < 4.0
    shifted = pattern((gx + 25) * 3, gy * 3).astype(np.float64)
    assert np.abs(got - shifted).mean() > 4 * np.abs(got - expected).mean()
    assert meta["file"] == "ortho.png"
    with pytest.raises(satellite.NoCoverage):
        asyncio.run(source.fetch(lat0 + 0.01, lon0))


def test_geotiff_tags_georeference(tmp_path) -> None:
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    tags = ImageFileDirectory_v2()
    tags[33550] = (0.5, 0.25, 0.0)
    tags[33922] = (0.0, 0.0, 0.0, 1000.0, 2000.0, 0.0)
    Image.new("RGB", (40, 20)).save(tmp_path / "a.tif", tiffinfo=tags)
    geo = satellite.read_georeference(tmp_path / "a.tif")
    assert (geo.x0, geo.y0, geo.sx, geo.sy, geo.width, geo.height) == (
        1000.0, 2000.0, 0.5, 0.25, 40, 20,
    )  # fmt: skip
    assert geo.contains(1001, 1996, 1019, 1999) and not geo.contains(1001, 1990, 1019, 1999)


def _geotagged_photo(path, lat: float, lon: float, size=(64, 32)) -> None:
    def dms(v: float) -> tuple[float, float, float]:
        v = abs(v)
        d = int(v)
        m = int((v - d) * 60)
        return float(d), float(m), (v - d - m / 60) * 3600

    exif = Image.Exif()
    exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W",
                    4: dms(lon)}  # fmt: skip
    Image.new("RGB", size, (90, 120, 60)).save(path, exif=exif)


def test_local_photos_nearest_within_radius_with_distance(tmp_path) -> None:
    lat0, lon0 = -33.87, 151.21
    for i, east in enumerate((20.0, 45.0, 300.0)):
        plat, plon = offset_latlon(lat0, lon0, east, 0.0)
        _geotagged_photo(tmp_path / f"p{i}.jpg", float(plat), float(plon), (128, 64))
    Image.new("RGB", (8, 8)).save(tmp_path / "no-gps.jpg")
    source = streetview.LocalPhotoSource(StreetViewConfig(provider="local", folder=str(tmp_path)))
    photo = asyncio.run(source.nearest(lat0, lon0, 50.0))
    assert photo.meta["file"] == "p0.jpg" and photo.meta["is_pano"]
    assert photo.distance_m == pytest.approx(20.0, abs=0.5)
    assert Image.open(__import__("io").BytesIO(photo.image)).size == (128, 64)
    assert asyncio.run(source.nearest(lat0 + 0.01, lon0, 50.0)) is None


# --- descriptions ---------------------------------------------------------------------------


GOOD = (
    "I am standing on a quiet residential road lined with low houses with red tiled roofs. "
    "To my left there is a small park with mature trees, and ahead the street meets a "
    "roundabout planted with shrubs. The sidewalks are broad and edged with grass, and the "
    "asphalt is dark and fresh."
)


def test_description_checks() -> None:
    cfg = DescribeConfig(min_words=20, max_words=80)
    banned = place_names(get_region("tokyo"), ["Shibuya"])
    assert "Tokyo" in banned and "Japan" in banned and "Lagos" in banned
    assert check_description(GOOD, cfg, banned, "stop") is None
    assert check_description(GOOD, cfg, banned, "length") == "answer cut off at max_tokens"
    assert check_description("I see a road.", cfg, banned, "stop").startswith("too short")
    assert check_description(GOOD * 4, cfg, banned, "stop").startswith("too long")
    refusal = "I'm sorry, but I cannot describe this. " + GOOD
    assert check_description(refusal, cfg, banned, "stop") == "refusal"
    third = GOOD.replace("I am standing", "The camera is").replace("my left", "the left")
    assert check_description(third, cfg, banned, "stop") == "not in the first person"
    leak = GOOD.replace("a small park", "Shibuya's small park")
    assert check_description(leak, cfg, banned, "stop") == "names a place ('Shibuya')"
    # Whole words only: "Romance" does not name Rome.
    assert check_description(GOOD + " Romance.", cfg, ["Rome"], "stop") is None


def test_prompt_template_fills_word_bounds(tmp_path) -> None:
    prompt = load_prompt(DescribeConfig(min_words=33, max_words=99))
    assert "33 to 99 words" in prompt.user and "first person" in prompt.user
    assert "place" in prompt.system
    custom = tmp_path / "p.txt"
    custom.write_text("Describe in {min_words}-{max_words} words.")
    mine = load_prompt(DescribeConfig(prompt_file=str(custom), min_words=5, max_words=9))
    assert (mine.system, mine.user) == ("", "Describe in 5-9 words.")
    assert mine.digest != prompt.digest


# --- HTTP policy pieces ----------------------------------------------------------------------


def test_token_bucket_spaces_requests_at_the_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def go() -> None:
        bucket = TokenBucket(rate=4.0, burst=2.0, clock=lambda: now[0], sleep=fake_sleep)
        for _ in range(10):
            await bucket.acquire()

    asyncio.run(go())
    # Two requests ride the burst; the other eight wait a quarter second each.
    assert now[0] == pytest.approx(8 / 4.0)
    assert len(slept) == 8


def test_retry_after_parsing() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None


# --- configuration and splits ------------------------------------------------------------------


def test_config_file_overrides_and_errors(tmp_path) -> None:
    path = tmp_path / "build.yaml"
    path.write_text(
        "sample:\n  per_region: 7\n  regions: [tokyo, Europe]\nsatellite:\n  url: x/{z}/{x}/{y}\n"
    )
    cfg = load_build_config(path, {"satellite.zoom": 19, "describe.banned_terms": "a,b"})
    assert cfg.sample.per_region == 7 and cfg.sample.regions == ["tokyo", "Europe"]
    assert cfg.satellite.zoom == 19 and cfg.describe.banned_terms == ["a", "b"]
    with pytest.raises(PlanetlocError, match=re.escape("unknown build setting 'sample.quota'")):
        load_build_config(path, {"sample.quota": 3})
    with pytest.raises(PlanetlocError, match=re.escape("streetview.provider = 'google'")):
        load_build_config(path, {"streetview.provider": "google"})
    with pytest.raises(
        PlanetlocError, match=re.escape("sample.per_region must be a int, got 'many'")
    ):
        load_build_config(path, {"sample.per_region": "many"})
    with pytest.raises(PlanetlocError, match=re.escape("satellite.url is empty")):
        load_build_config(None)


def test_unseen_regions_are_deterministic_and_sized() -> None:
    slugs = [r.slug for r in resolve_regions(["Europe"])]
    held = held_out_regions(slugs, 0.2, seed=0)
    assert len(held) == 10 and held == held_out_regions(list(reversed(slugs)), 0.2, seed=0)
    assert held != held_out_regions(slugs, 0.2, seed=1)


def test_example_build_config_loads() -> None:
    from pathlib import Path

    cfg = load_build_config(Path(__file__).parents[1] / "configs" / "build-example.yaml")
    assert cfg.streetview.provider == "mapillary" and cfg.write.webdataset
    assert "{key}" in cfg.satellite.url and cfg.satellite.key_env == "TILES_KEY"


def test_lvlm_request_carries_the_photo_inline_and_bounded(tmp_path) -> None:
    import base64
    import io

    from planetloc.builder.config import HttpConfig
    from planetloc.builder.describe import Describer

    async def payloads() -> tuple[dict, dict]:
        describer = Describer(DescribeConfig(image_max_side=64), HttpConfig(), Redactor(), tmp_path)
        big = io.BytesIO()
        Image.new("RGB", (400, 200), (10, 200, 30)).save(big, "PNG")
        small = io.BytesIO()
        Image.new("RGB", (60, 30), (10, 200, 30)).save(small, "JPEG")
        try:
            return describer._payload(big.getvalue(), 0), describer._payload(small.getvalue(), 1)
        finally:
            await describer.close()

    big, small = asyncio.run(payloads())
    url = big["messages"][-1]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "JPEG" and sent.size == (64, 32)
    assert big["messages"][0]["role"] == "system" and small["temperature"] > big["temperature"]


def test_per_region_quotas() -> None:
    from planetloc.builder.sampling import quota_of

    cfg = load_build_config(
        None, {"satellite.url": "x/{z}/{x}/{y}", "sample.quotas": {"Tokyo": 3, "lagos-ng": 0}}
    )
    assert len(sample_region(get_region("tokyo-jp"), cfg.sample)) == 3
    assert sample_region(get_region("lagos"), cfg.sample) == []
    assert quota_of(get_region("paris"), cfg.sample) == cfg.sample.per_region
    with pytest.raises(PlanetlocError, match="unknown region 'Gotham'"):
        load_build_config(None, {"satellite.url": "x/{x}", "sample.quotas": {"Gotham": 1}})
    with pytest.raises(PlanetlocError, match=re.escape("sample.quotas['Tokyo'] must be a count")):
        load_build_config(None, {"satellite.url": "x/{x}", "sample.quotas": {"Tokyo": -1}})
