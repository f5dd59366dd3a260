"""SynthCORE: determinism, resume, splits, and physical consistency of tiles and texts."""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from planetloc.data.manifest import Manifest, read_manifest
from planetloc.data.synth.describe import HELD_OUT_STYLE, STYLES, TRAIN_STYLES, WORD_RANGES
from planetloc.data.synth.generate import SynthConfig, generate_world, region_seed
from planetloc.data.synth.render import cast_shadows, crop_tile, render_scene
from planetloc.data.synth.style import derive_style
from planetloc.data.synth.world import BUILDING, build_region_map
from planetloc.errors import PlanetlocError
from planetloc.geo.coords import haversine_m
from planetloc.geo.regions import get_region
from planetloc.geo.sun import solar_position

TINY = SynthConfig(regions=3, per_region=12, distractors=4, seed=3)


def _tile(manifest: Manifest, sample) -> np.ndarray:
    return np.asarray(Image.open(manifest.resolve(sample.sat_path)).convert("RGB")).astype(
        np.float32
    )


def test_same_seed_gives_the_same_world_byte_for_byte(tmp_path: Path) -> None:
    a = generate_world(TINY, tmp_path / "a")
    b = generate_world(TINY, tmp_path / "b", workers=2)
    assert a.read_bytes() == b.read_bytes()
    for png in sorted((tmp_path / "a" / "sat").rglob("*.png")):
        assert png.read_bytes() == (tmp_path / "b" / png.relative_to(tmp_path / "a")).read_bytes()
    other = generate_world(SynthConfig(**{**TINY.__dict__, "seed": 4}), tmp_path / "c")
    assert other.read_bytes() != a.read_bytes()


def test_interrupted_generation_resumes_to_the_same_world(tmp_path: Path) -> None:
    full = generate_world(TINY, tmp_path / "full")
    out = tmp_path / "resumed"
    generate_world(TINY, out)
    # Simulate a kill after the first region: later parts, the manifest and summary are gone.
    parts = sorted((out / "parts").glob("*.jsonl"))
    for part in parts[1:]:
        part.unlink()
    (out / "manifest.jsonl").unlink()
    (out / "world.json").unlink()
    shutil.rmtree(out / "sat" / parts[1].stem)
    first_tile = next((out / "sat" / parts[0].stem).glob("*.png"))
    stamp = first_tile.stat().st_mtime_ns
    resumed = generate_world(TINY, out)
    assert resumed.read_bytes() == full.read_bytes()
    assert first_tile.stat().st_mtime_ns == stamp  # finished regions are not redone


def test_a_denser_gallery_keeps_every_described_sample(tmp_path: Path) -> None:
    from dataclasses import replace

    sparse = read_manifest(generate_world(replace(TINY, regions=2), tmp_path / "a"))
    dense_cfg = replace(TINY, regions=2, distractors=40, gallery_on_streets=False)
    dense = read_manifest(generate_world(dense_cfg, tmp_path / "b"))
    described = [s for s in sparse.samples if s.split != "gallery"]
    same = {s.id: s for s in dense.samples if s.split != "gallery"}
    assert len(same) == len(described) and len(dense.by_split("gallery")) == 80
    for s in described:
        twin = same[s.id]
        assert (twin.text, twin.split, twin.lat, twin.lon) == (s.text, s.split, s.lat, s.lon)
        assert dense.resolve(twin.sat_path).read_bytes() == sparse.resolve(s.sat_path).read_bytes()


def test_synth_refuses_a_folder_holding_other_files(tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_text("someone's work\n")
    with pytest.raises(PlanetlocError, match="holds no SynthCORE world"):
        generate_world(TINY, tmp_path)
    assert (tmp_path / "manifest.jsonl").read_text() == "someone's work\n"


def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    generate_world(TINY, tmp_path)
    with pytest.raises(PlanetlocError, match=r"other settings \(per_region\)"):
        generate_world(SynthConfig(**{**TINY.__dict__, "per_region": 13}), tmp_path)


def test_a_world_can_train_the_held_out_style_too(tmp_path: Path) -> None:
    from dataclasses import replace

    plain = read_manifest(generate_world(TINY, tmp_path / "a"))
    every = read_manifest(generate_world(replace(TINY, train_all_styles=True), tmp_path / "b"))
    # The same scenes and splits; only the phrasings the training texts are drawn from change.
    assert [(s.id, s.split) for s in every.samples] == [(s.id, s.split) for s in plain.samples]

    # Test queries read the same in every style in both worlds, so they can be compared.
    def phrasings(manifest: Manifest) -> dict[str, dict[str, str]]:
        return {
            s.id: {s.meta["style"]: s.text, **s.meta["alt_texts"]}
            for s in manifest.samples
            if s.split in ("test", "test_unseen")
        }

    assert phrasings(every) == phrasings(plain)
    trained = [s for s in every.samples if s.split in ("train", "val")]
    assert {s.meta["style"] for s in trained} == set(STYLES)
    for s in trained:
        assert set(s.meta["alt_texts"]) == set(STYLES) - {s.meta["style"]}
    # Worlds made before the setting existed keep their stamp: it is recorded only when set.
    stamp = json.loads((tmp_path / "a" / "config.json").read_text())
    assert "train_all_styles" not in stamp
    assert json.loads((tmp_path / "b" / "config.json").read_text())["train_all_styles"] is True
    with pytest.raises(PlanetlocError, match=r"other settings \(train_all_styles\)"):
        generate_world(TINY, tmp_path / "b")


def test_world_has_all_splits_and_valid_samples(small_world: Manifest) -> None:
    splits = {s.split for s in small_world.samples}
    assert splits == {"train", "val", "test", "test_unseen", "gallery"}
    unseen = {s.region for s in small_world.by_split("test_unseen")}
    seen = {s.region for s in small_world.by_split("train", "val", "test")}
    assert unseen and not unseen & seen
    assert len({s.continent for s in small_world.samples}) == 6
    styles = set()
    for s in small_world.samples:
        assert Image.open(small_world.resolve(s.sat_path)).size == (128, 128)
        if s.split == "gallery":
            assert s.street_path is None and "alt_texts" not in s.meta
            continue
        style = s.meta["style"]
        styles.add(style)
        low, high = WORD_RANGES[style]
        assert style in TRAIN_STYLES and low <= len(s.text.split()) <= high, s.text
        # Every other style's phrasing of the same scene; the held-out one only for testing.
        others = set(STYLES) - {style}
        if s.split in ("train", "val"):
            others.discard(HELD_OUT_STYLE)
        assert set(s.meta["alt_texts"]) == others
        # A street panorama, 4:1, of the same standing point.
        assert Image.open(small_world.resolve(s.street_path)).size == (512, 128)
        assert s.meta["tile_m"] == 192.0 and 0 <= s.meta["heading_deg"] < 360
    assert styles == set(TRAIN_STYLES)


def test_descriptions_vary_in_phrasing(small_world: Manifest) -> None:
    texts = [s.text for s in small_world.samples if s.text]
    openings = {" ".join(t.split()[:3]) for t in texts}
    assert len(set(texts)) == len(texts)
    assert len(openings) >= 4


def test_coordinates_follow_the_metric_map(small_world: Manifest) -> None:
    region = small_world.samples[0].region
    a, b = [s for s in small_world.samples if s.region == region][:2]
    metric = math.hypot(a.meta["east_m"] - b.meta["east_m"], a.meta["north_m"] - b.meta["north_m"])
    assert haversine_m(a.lat, a.lon, b.lat, b.lon) == pytest.approx(metric, rel=1e-3, abs=0.5)


def test_neighbouring_tiles_overlap_in_pixels(small_world: Manifest) -> None:
    """Two tiles of one scene whose centres are close share the pixels of their overlap."""
    gsd = 1.5
    checked = 0
    samples = small_world.samples
    for i, a in enumerate(samples):
        for b in samples[i + 1 :]:
            if b.region != a.region or b.meta["scene"] != a.meta["scene"]:
                continue
            ja, jb = a.meta["misregistration_px"], b.meta["misregistration_px"]
            # Top-left corner of each tile in map pixels (rows grow southward).
            ra = -a.meta["north_m"] / gsd + ja[0]
            ca = a.meta["east_m"] / gsd + ja[1]
            rb = -b.meta["north_m"] / gsd + jb[0]
            cb = b.meta["east_m"] / gsd + jb[1]
            dr, dc = round(rb - ra), round(cb - ca)
            if not (8 <= max(abs(dr), abs(dc)) <= 48):
                continue
            ta, tb = _tile(small_world, a), _tile(small_world, b)
            sa = ta[max(dr, 0) : 128 + min(dr, 0), max(dc, 0) : 128 + min(dc, 0)]
            sb = tb[max(-dr, 0) : 128 + min(-dr, 0), max(-dc, 0) : 128 + min(-dc, 0)]
            overlap = np.corrcoef(sa.ravel(), sb.ravel())[0, 1]
            shifted = np.corrcoef(sa[:-10, :-10].ravel(), sb[10:, 10:].ravel())[0, 1]
            assert overlap > 0.95, (a.id, b.id, overlap)
            assert overlap > shifted + 0.2
            checked += 1
    assert checked >= 3


def test_shadows_fall_opposite_the_sun_with_length_h_over_tan_elevation() -> None:
    height = np.zeros((200, 200), dtype=np.float32)
    height[95:105, 95:105] = 30.0
    gsd, elevation = 1.0, 30.0
    for azimuth in (45.0, 135.0, 200.0, 300.0):
        shadow = cast_shadows(height, gsd, azimuth, elevation)
        rows, cols = np.nonzero(shadow & (height == 0))
        d_north, d_east = -(rows.mean() - 99.5), cols.mean() - 99.5
        bearing = math.degrees(math.atan2(d_east, d_north)) % 360
        assert (
            abs((bearing - (azimuth + 180)) % 360 - 0) < 8
            or abs((bearing - (azimuth + 180)) % 360 - 360) < 8
        )
        length = np.hypot(-(rows - 99.5), cols - 99.5).max()
        expected = 30.0 / math.tan(math.radians(elevation)) / gsd
        assert expected * 0.9 < length < expected + 10  # reach of the far corner


def test_rendered_buildings_are_darker_on_the_side_away_from_the_computed_sun() -> None:
    region = get_region("Madrid")
    rng = np.random.default_rng(region_seed(1, region.slug))
    rmap = build_region_map(derive_style(region, rng), rng, extent_m=600, gsd=1.5)
    when = datetime(2023, 6, 1, 9, 0, tzinfo=UTC)
    scene = render_scene(rmap, region.lat, region.lon, when, rng)
    azimuth, _ = solar_position(region.lat, region.lon, when)
    assert scene.sun_azimuth_deg == pytest.approx(azimuth)
    step = 4  # pixels from the building edge
    d_row = round(-math.cos(math.radians(azimuth)) * step)
    d_col = round(math.sin(math.radians(azimuth)) * step)
    building = rmap.cls == BUILDING
    ground = (rmap.cls != BUILDING) & (rmap.height == 0)
    bright = scene.image.mean(axis=2)
    away = np.roll(building, (-d_row, -d_col), axis=(0, 1)) & ground  # just past the shaded side
    toward = np.roll(building, (d_row, d_col), axis=(0, 1)) & ground  # just past the lit side
    # The lit side can still be shaded by neighbours, so the sides are compared.
    assert scene.shadow[away].mean() > 0.8
    assert scene.shadow[away].mean() > scene.shadow[toward].mean() + 0.3
    assert bright[away].mean() < 0.75 * bright[toward].mean()


def _vegetation_fraction(tile: np.ndarray) -> float:
    r, g, b = tile[..., 0] / 255, tile[..., 1] / 255, tile[..., 2] / 255
    return float(np.mean((2 * g - r - b) > 0.06))


def test_dense_tree_cover_tiles_have_more_vegetation_than_paved_plaza_tiles(
    small_world: Manifest,
) -> None:
    trees = [s for s in small_world.samples if "dense tree cover" in s.text]
    plaza = [s for s in small_world.samples if "paved plaza" in s.text]
    assert len(trees) >= 5 and len(plaza) >= 3, (len(trees), len(plaza))
    veg_trees = np.mean([_vegetation_fraction(_tile(small_world, s)) for s in trees])
    veg_plaza = np.mean([_vegetation_fraction(_tile(small_world, s)) for s in plaza])
    assert veg_trees > veg_plaza + 0.05, (veg_trees, veg_plaza)


def test_tile_crops_outside_the_map_are_refused() -> None:
    region = get_region("Lagos")
    rng = np.random.default_rng(0)
    rmap = build_region_map(derive_style(region, rng), rng, extent_m=400, gsd=2.0)
    scene = render_scene(rmap, region.lat, region.lon, datetime(2023, 3, 1, 10, tzinfo=UTC), rng)
    with pytest.raises(ValueError, match="leaves the"):
        crop_tile(scene, 5, 5, tile_px=64, out_px=64, rng=rng)


def test_summary_and_manifest_agree_with_the_per_region_parts(small_world: Manifest) -> None:
    from collections import Counter

    summary = json.loads((small_world.root / "world.json").read_text())
    parts = [
        json.loads(line)
        for region in summary["regions"]
        for line in (small_world.root / "parts" / f"{region['slug']}.jsonl")
        .read_text()
        .splitlines()
    ]
    # The manifest is exactly the regions' part files, in catalog order, and the summary's
    # counts are those of the parts, split by split.
    assert [s.to_dict() for s in small_world.samples] == parts
    assert summary["splits"] == dict(Counter(p["split"] for p in parts))
    assert summary["samples"] == len(parts) == 8 * (50 + 10)


def test_synth_cli_trains_all_styles_on_request_and_refuses_to_mix_worlds(
    tmp_path: Path, capsys
) -> None:
    from planetloc.cli import main

    small = ["--regions", "2", "--per-region", "6", "--distractors", "1", "--no-street-views"]
    out = str(tmp_path / "w")
    assert main(["synth", "--out", out, *small, "--train-all-styles"]) == 0
    assert json.loads((tmp_path / "w" / "config.json").read_text())["train_all_styles"] is True
    capsys.readouterr()
    assert main(["synth", "--out", out, *small]) == 2  # the held-out world is another world
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other settings (train_all_styles)" in err
