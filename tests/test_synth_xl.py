"""SynthCORE at scale: lazily computed regions, WebDataset shards, resume per shard, presets."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from planetloc.data.manifest import read_manifest
from planetloc.data.shards import read_member
from planetloc.data.synth.chunked import LAYERS, LazyRegionMap, LazyScene
from planetloc.data.synth.config import (
    PRESETS,
    SynthConfig,
    preset_config,
    region_extent_m,
)
from planetloc.data.synth.generate import generate_world
from planetloc.data.synth.plan import plan_region, region_seed, unseen_regions
from planetloc.data.synth.render import Acquisition, cast_shadows, shade
from planetloc.data.synth.style import LAND_USES, derive_style
from planetloc.data.synth.world import ROAD, TREE, RegionField
from planetloc.errors import PlanetlocError
from planetloc.geo.regions import get_region, load_catalog, select_regions

# Small enough to generate in about a second, with chunks small enough that tiles, views and
# shadows cross chunk borders everywhere.
SHARDED = SynthConfig(
    regions=2,
    per_region=12,
    distractors=20,
    seed=5,
    extent_m=600.0,
    extent_max_m=900.0,
    tile_m=96.0,
    size=64,
    gallery_on_streets=False,
    gallery_spacing_m=10.0,
    shards=True,
    shard_size=8,
    image_format="jpg",
    chunk_px=64,
)


def _field(name: str, size_px: int, seed: int = 0) -> RegionField:
    region = get_region(name)
    rng = np.random.default_rng(region_seed(seed, region.slug))
    return RegionField(derive_style(region, rng), rng, size_px=size_px, gsd=1.5)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def sharded_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sharded") / "w"
    generate_world(SHARDED, out)
    return out


def test_any_window_is_the_crop_of_a_larger_window_for_every_layer() -> None:
    field = _field("Lagos", 300)
    lazy = LazyRegionMap(field, chunk_px=64, max_chunks=100)
    big = lazy.window(10, 20, 260, 250)
    for r0, c0, h, w in ((70, 60, 1, 1), (50, 120, 40, 90), (130, 70, 100, 61), (10, 20, 64, 64)):
        small = LazyRegionMap(field, chunk_px=64, max_chunks=4).window(r0, c0, h, w)
        crop = (slice(r0 - 10, r0 - 10 + h), slice(c0 - 20, c0 - 20 + w))
        for name in LAYERS:
            assert np.array_equal(getattr(small, name), getattr(big, name)[crop]), (name, r0, c0)
        assert small.origin == (r0, c0) and small.region_shape == (300, 300)
        assert small.to_pixel(0.0, 0.0) == (150 - r0, 150 - c0)
    # The map is a function of region coordinates alone: chunking changes nothing.
    other = LazyRegionMap(field, chunk_px=100, max_chunks=100).window(10, 20, 260, 250)
    direct = field.compute(10, 20, 260, 250)
    for name in LAYERS:
        assert np.array_equal(getattr(other, name), getattr(big, name)), name
        assert np.array_equal(getattr(direct, name), getattr(big, name)), name
    assert 0 < big.height.max() <= field.max_height_m  # the bound shadow margins rely on
    # Tree crowns do cross chunk borders (so the margins matter here).
    trees = big.cls == TREE
    assert trees[:, 43:45].any() and trees[53:55, :].any()


def test_rendered_window_is_the_crop_of_a_larger_render_with_shadows_across_chunks() -> None:
    field = _field("Shanghai", 320)
    lazy = LazyRegionMap(field, chunk_px=64, max_chunks=100)
    when = datetime(2023, 12, 1, 9, 30, tzinfo=UTC)
    # A low sun in the south-west: shadows of 100+ px falling north-east, across chunk borders.
    acq = Acquisition(when, 240.0, 18.0, "winter", 0.03)
    whole = lazy.window(0, 0, 320, 320)
    shadow = cast_shadows(whole.height, whole.gsd, acq.sun_azimuth_deg, acq.sun_elevation_deg)
    image = shade(whole, acq, shadow)
    scene = LazyScene(lazy, acq, max_chunks=100)
    for r0, c0, h, w in ((0, 0, 320, 320), (100, 37, 90, 150), (250, 250, 70, 70)):
        part = LazyScene(lazy, acq, max_chunks=2).window(r0, c0, h, w)
        assert np.array_equal(part.image, image[r0 : r0 + h, c0 : c0 + w]), (r0, c0)
        assert np.array_equal(part.shadow, shadow[r0 : r0 + h, c0 : c0 + w]), (r0, c0)
        assert part.season == "winter" and part.sun_elevation_deg == 18.0
        assert np.array_equal(scene.window(r0, c0, h, w).image, part.image)
    # Buildings west of the first chunk border shade ground east of it.
    west_only = whole.height.copy()
    west_only[:, 64:] = 0
    across = cast_shadows(west_only, whole.gsd, acq.sun_azimuth_deg, acq.sun_elevation_deg)
    assert across[:, 64:].sum() > 100


def test_memory_is_bounded_by_the_chunk_cache_not_the_region() -> None:
    field = _field("Tokyo", 8000)  # a 12 km region: 64 M pixels, 15,000 chunks of 64 px
    lazy = LazyRegionMap(field, chunk_px=64, max_chunks=12)
    acq = Acquisition(datetime(2023, 6, 1, tzinfo=UTC), 120.0, 40.0, "summer", 0.0)
    scene = LazyScene(lazy, acq, max_chunks=6)
    rng = np.random.default_rng(0)
    for r0, c0 in rng.integers(0, 8000 - 40, size=(8, 2)):
        assert scene.window(int(r0), int(c0), 40, 40).image.shape == (40, 40, 3)
    assert lazy.cached_chunks <= 12 and scene.cached_chunks <= 6
    with pytest.raises(ValueError, match="leaves the 8000x8000 region"):
        lazy.window(7990, 0, 20, 20)


def test_block_attributes_do_not_repeat_across_a_metropolitan_extent() -> None:
    field = _field("Chicago", 8000)
    bu, bv = np.meshgrid(np.arange(64), np.arange(64))
    here = field.block_use(bu, bv)
    chance = float(np.sum(np.square(field.style.land_use_weights)))
    for shift in (64, 128, 1000):  # 64: the period of lookup-table worlds
        there = field.block_use(bu + shift, bv + shift)
        assert np.mean(here == there) < chance + 0.1, shift
    # Every land use appears in proportion to the region's weights, not a fixed pattern.
    counts = np.bincount(here.ravel(), minlength=len(LAND_USES)) / here.size
    assert np.abs(counts - np.asarray(field.style.land_use_weights)).max() < 0.05


def test_sharded_world_is_the_same_with_one_or_two_workers(
    sharded_world: Path, tmp_path: Path
) -> None:
    generate_world(SHARDED, tmp_path / "two", workers=2)
    one, two = _tree(sharded_world), _tree(tmp_path / "two")
    assert sorted(one) == sorted(two)
    assert any(name.endswith(".tar") for name in one)
    assert all(one[name] == two[name] for name in one)


def test_manifest_rows_are_exactly_the_shard_records(sharded_world: Path) -> None:
    manifest = read_manifest(sharded_world / "manifest.jsonl")  # resolves tar#member paths
    shards = sorted((sharded_world / "shards").glob("*.tar"))
    regions = select_regions(SHARDED.regions)
    expected = {
        f"{r.slug}-{kind}-{k:04d}.tar"
        for r in regions
        for kind, n in (("described", 12), ("gallery", 20))
        for k in range(-(-n // SHARDED.shard_size))
    }
    assert {p.name for p in shards} == expected
    from_tars = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            assert names == sorted(names)  # members in key order, json before sat
            assert all(m.mtime == 0 and m.mode == 0o644 and m.uid == 0 for m in members)
            for m in members:
                if m.name.endswith(".json"):
                    record = json.loads(tar.extractfile(m).read())
                    key = m.name.removesuffix(".json")
                    assert key == record["id"].replace(".", "_")
                    assert record["sat_path"] == f"shards/{shard.name}#{key}.sat.jpg"
                    assert f"{key}.sat.jpg" in names
                    from_tars.append(record)
        assert shard.read_bytes()[257:263] == b"ustar\x00"
    rows = [s.to_dict() for s in manifest.samples]
    assert sorted(rows, key=lambda r: r["id"]) == sorted(from_tars, key=lambda r: r["id"])
    assert len(rows) == SHARDED.regions * (SHARDED.per_region + SHARDED.distractors)
    kinds = {
        (s.split == "gallery", s.sat_path.split("#")[0].split("-")[-2]) for s in manifest.samples
    }
    assert kinds == {(False, "described"), (True, "gallery")}
    tile = Image.open(io.BytesIO(read_member(*_split(sharded_world, rows[0]["sat_path"]))))
    assert tile.format == "JPEG" and tile.size == (64, 64)


def _split(root: Path, sat_path: str) -> tuple[Path, str]:
    tar, member = sat_path.split("#")
    return root / tar, member


def test_records_stand_where_the_plan_put_them(sharded_world: Path) -> None:
    manifest = read_manifest(sharded_world / "manifest.jsonl", check_images=False)
    regions = select_regions(SHARDED.regions)
    held = unseen_regions(regions, SHARDED.unseen_fraction)
    on_street = off_street = 0
    for region in regions:
        plan = plan_region(region, SHARDED, region.slug in held)
        assert plan.size_px == round(region_extent_m(region, SHARDED) / SHARDED.gsd)
        lazy = LazyRegionMap(plan.field, chunk_px=64, max_chunks=64)
        rows = {s.id: s for s in manifest.samples if s.region == region.slug}
        for planned in plan.samples:
            meta = rows[planned.id].meta
            n = plan.size_px
            assert meta["east_m"] == pytest.approx((planned.col - n / 2 + 0.5) * 1.5)
            assert meta["north_m"] == pytest.approx((n / 2 - planned.row - 0.5) * 1.5)
            street = bool(
                plan.field.streets_at(np.array([planned.row]), np.array([planned.col]))[0]
            )
            cls = lazy.window(planned.row, planned.col, 1, 1).cls[0, 0]
            if planned.split != "gallery":
                # Described samples stand on pavement (possibly under a street tree).
                assert street and cls in (ROAD, TREE), planned.id
                assert "heading_deg" in meta and rows[planned.id].text
            else:
                on_street, off_street = on_street + street, off_street + (not street)
                assert "heading_deg" not in meta and rows[planned.id].text == ""
    assert off_street > 0  # gallery tiles go anywhere, not only on streets


def test_a_deleted_shard_is_regenerated_byte_for_byte_and_nothing_else(
    sharded_world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w"
    generate_world(SHARDED, out)
    shards = sorted((out / "shards").glob("*.tar"))
    victim = shards[3]
    original = victim.read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in shards if p != victim}
    victim.unlink()
    (out / "manifest.jsonl").unlink()
    leftover = out / "shards" / f".{victim.name}.abc123.tmp"  # what a kill -9 leaves
    leftover.write_bytes(b"half a shard")
    generate_world(SHARDED, out)
    assert victim.read_bytes() == original
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    assert not leftover.exists()
    assert _tree(out) == _tree(sharded_world)


def test_a_run_killed_after_some_shards_resumes_to_the_same_world(
    sharded_world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w"
    seen: list[int] = []

    def killer(done: int, total: int) -> None:
        seen.append(done)
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate_world(SHARDED, out, progress=killer)
    finished = sorted((out / "shards").glob("*.tar"))
    assert len(finished) == 3 and not (out / "manifest.jsonl").exists()
    stamps = {p: p.stat().st_mtime_ns for p in finished}
    progress: list[tuple[int, int]] = []
    generate_world(SHARDED, out, progress=lambda d, t: progress.append((d, t)))
    assert progress[0] == (3, 10) and progress[-1] == (10, 10)
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())
    assert _tree(out) == _tree(sharded_world)


def test_png_and_parquet_shards_and_other_settings_are_refused(tmp_path: Path) -> None:
    cfg = replace(SHARDED, regions=1, image_format="png", format="parquet", distractors=3)
    manifest = read_manifest(generate_world(cfg, tmp_path / "png"))
    assert manifest.path.name == "manifest.parquet"
    assert all(s.sat_path.endswith(".sat.png") for s in manifest.samples)
    with pytest.raises(PlanetlocError, match=r"other settings \(shard_size\)"):
        generate_world(replace(cfg, shard_size=4), tmp_path / "png")


def test_dense_preset_neighbourhoods_are_much_smaller_than_a_region() -> None:
    cfg = replace(PRESETS["dense"], regions=2)  # the dense preset's regions, counts and extent
    regions = select_regions(cfg.regions)
    for region in regions:
        plan = plan_region(region, cfg, unseen=False)
        points = np.asarray([(s.row, s.col) for s in plan.samples], dtype=np.float64) * cfg.gsd
        gallery = np.asarray([s.split == "gallery" for s in plan.samples])
        assert gallery.sum() == cfg.distractors and (~gallery).sum() == cfg.per_region
        queries, tiles = points[~gallery], points[gallery]
        dist = np.sqrt(((queries[:, None, :] - tiles[None, :, :]) ** 2).sum(-1))
        radius = np.sort(dist, axis=1)[:, 99]  # reach of the 100 nearest gallery tiles
        extent = plan.size_px * cfg.gsd
        assert np.median(radius) < extent / 6, (region.slug, np.median(radius), extent)
        assert radius.max() < extent / 3
        # Gallery tiles keep their distance from each other and from the described samples.
        nearest = np.sort(np.sqrt(((tiles[:, None] - points[None]) ** 2).sum(-1)), axis=1)[:, 1]
        assert nearest.min() >= cfg.gallery_spacing


def test_presets_and_extents() -> None:
    assert PRESETS["default"] == SynthConfig()
    default = SynthConfig()
    assert (default.regions, default.per_region, default.distractors) == (24, 200, 20)
    assert (default.size, default.shards, default.image_format) == (128, False, "png")
    xl = PRESETS["xl"]
    assert xl.regions == len(load_catalog()) == 225
    assert 100_000 <= xl.regions * xl.per_region < 101_000
    assert 900_000 <= xl.regions * xl.distractors <= 1_000_000
    assert xl.shards and xl.image_format == "jpg" and not xl.gallery_on_streets
    extents = sorted((region_extent_m(r, xl), r.population) for r in select_regions(xl.regions))
    assert extents[0][0] >= xl.extent_m and extents[-1][0] <= xl.extent_max_m
    assert extents[-1][0] > 3 * extents[0][0]
    pops = [p for _, p in extents]
    assert pops == sorted(pops)  # larger cities get larger regions
    assert region_extent_m(get_region("Lagos"), default) == 1500.0
    custom = preset_config("xl", distractors=100, regions=3)
    assert custom.distractors == 100 and custom.preset == "xl" and custom.shards
    with pytest.raises(PlanetlocError, match="unknown preset 'huge'"):
        preset_config("huge")
    with pytest.raises(PlanetlocError, match="unknown SynthConfig setting 'gallery'"):
        preset_config("xl", gallery=3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image_format": "webp"}, "--image-format must be one of png, jpg"),
        ({"jpeg_quality": 0}, "--jpeg-quality must be between 1 and 95"),
        ({"shard_size": 0}, "--shard-size must be at least 1"),
        ({"extent_max_m": 100.0}, "extent_max_m .* must not be below extent_m"),
        ({"extent_max_m": float("nan")}, "extent_max_m must be a finite number"),
        ({"gallery_spacing_m": 0.0}, "gallery_spacing_m must be a finite number > 0"),
        ({"distractors": -1}, "--distractors must be at least 0"),
        ({"unseen_fraction": float("inf")}, "unseen_fraction must be a finite number"),
        ({"unseen_fraction": 1.5}, r"unseen_fraction must be in \[0, 1\]"),
    ],
)
def test_bad_settings_are_refused_with_one_line(change: dict, message: str) -> None:
    with pytest.raises(PlanetlocError, match=message):
        replace(SynthConfig(), **change).check()


def test_a_region_too_small_for_its_samples_says_so(tmp_path: Path) -> None:
    cfg = replace(SHARDED, regions=1, distractors=2000, extent_max_m=None)
    with pytest.raises(PlanetlocError, match=r"only \d+ of 2012 points fit"):
        generate_world(cfg, tmp_path)
