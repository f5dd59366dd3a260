"""Generate a SynthCORE world: tiles, descriptions and a manifest in the sample schema.

Layout of the output folder with one file per tile (the default)::

    OUT/config.json             the settings the world was made with
    OUT/world.json              a summary (written last)
    OUT/manifest.jsonl          every sample (or .parquet)
    OUT/sat/<region>/<id>.png   satellite tiles (or .jpg)
    OUT/street/<region>/<id>.jpg street panoramas of described samples (with street views)
    OUT/parts/<region>.jsonl    per-region records; a region with a part is done

and with ``shards`` (see :mod:`planetloc.data.synth.world_shards`)::

    OUT/shards/<region>-described-NNNN.tar   described samples (train/val/test/test_unseen)
    OUT/shards/<region>-gallery-NNNN.tar     gallery tiles
    OUT/manifest.<format>                    every record of every shard, in shard order

A region's map is computed lazily in chunks (:mod:`planetloc.data.synth.chunked`), and every
sample draws from its own generator seeded from (seed, region, sample), so a sample is the
same whatever else is generated with it. A killed run resumes: finished regions (files) or
finished shards are kept as they are, and any number of workers produces the same bytes.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from planetloc.atomic import write_bytes, write_text
from planetloc.data.manifest import write_manifest, write_records
from planetloc.data.schema import Sample
from planetloc.data.shards import sample_key
from planetloc.data.synth.chunked import LazyRegionMap, LazyScene
from planetloc.data.synth.config import PRESETS, SynthConfig, preset_config
from planetloc.data.synth.describe import (
    HELD_OUT_STYLE,
    STYLES,
    TRAIN_STYLES,
    Observer,
    choose_heading,
    describe_all,
    observe,
)
from planetloc.data.synth.plan import (
    PlannedSample,
    RegionPlan,
    plan_region,
    region_seed,
    shard_names,
    unseen_regions,
    view_radius_px,
)
from planetloc.data.synth.render import sensor
from planetloc.data.synth.street import StreetViewConfig, render_panorama
from planetloc.data.synth.world_shards import (
    SHARD_DIR,
    read_shard_records,
    remove_stale_temporaries,
    sat_path,
    shard_path,
    write_shard,
)
from planetloc.errors import PlanetlocError
from planetloc.geo.coords import offset_latlon
from planetloc.geo.regions import Region, select_regions

__all__ = [
    "PRESETS",
    "SynthConfig",
    "generate_region",
    "generate_world",
    "preset_config",
    "region_seed",
    "unseen_regions",
]

FORMAT_VERSION = 2
# Memory for computed chunks per worker. Map chunks are also read for the shadows and views of
# their neighbours, so they are kept longer than rendered ones, which only the tiles over
# them need while the sweep passes by.
MAP_CACHE_BYTES = 96 * 2**20
SCENE_CACHE_BYTES = 48 * 2**20
_MAP_BYTES_PER_PX = 19  # class, height, albedo, roof and two masks
_SCENE_BYTES_PER_PX = 13  # radiance and shadow


class RegionWorld:
    """A region's map and scenes, computed lazily in caches of bounded size."""

    def __init__(self, plan: RegionPlan, cfg: SynthConfig) -> None:
        px = cfg.chunk_px**2
        map_chunks = max(16, MAP_CACHE_BYTES // (_MAP_BYTES_PER_PX * px))
        scene_chunks = max(9, SCENE_CACHE_BYTES // (_SCENE_BYTES_PER_PX * px))
        self.map = LazyRegionMap(plan.field, chunk_px=cfg.chunk_px, max_chunks=map_chunks)
        self.scenes = [
            LazyScene(self.map, acq, max_chunks=scene_chunks) for acq in plan.acquisitions
        ]


def encode_tile(tile: np.ndarray, image_format: str, quality: int) -> bytes:
    """PNG (fast, lossless) or baseline JPEG bytes of a uint8 RGB tile."""
    buf = io.BytesIO()
    if image_format == "png":
        Image.fromarray(tile).save(buf, format="PNG", compress_level=1)
    else:
        Image.fromarray(tile).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class MadeSample:
    """One sample: its record, encoded tile and (for described samples) street panorama."""

    record: dict[str, Any]
    tile: bytes
    street: bytes | None = None


def _street_config(cfg: SynthConfig) -> StreetViewConfig:
    return StreetViewConfig(width=cfg.street_width, height=cfg.street_width // 4)


def _texts(
    local: Any,
    scene: Any,
    observer: Observer,
    intersection: bool,
    cfg: SynthConfig,
    seed: list[int],
) -> tuple[str, dict[str, str], dict[str, float], str]:
    """The sample's text, its other phrasings, what was measured, and the text's style.

    Phrasings draw from their own generator so that adding styles never shifts the rest of
    the world's random stream; the scene's facts (and any deliberate errors) are drawn once.
    """
    rng = np.random.default_rng([*seed, 1])
    record = observe(
        local, scene, observer, intersection=intersection, difficulty=cfg.difficulty, rng=rng
    )
    trained = STYLES if cfg.train_all_styles else TRAIN_STYLES
    style = trained[int(rng.integers(0, len(trained)))]
    texts = describe_all(record, STYLES, rng)
    alternatives = {k: v for k, v in texts.items() if k != style} if cfg.alt_texts else {}
    return texts[style], alternatives, record.measured, style


def make_sample(
    plan: RegionPlan,
    planned: PlannedSample,
    world: RegionWorld,
    cfg: SynthConfig,
    sat: str,
    street: str | None,
) -> MadeSample:
    """One sample's record (with ``sat_path`` = ``sat`` and ``street_path`` = ``street`` for a
    described sample with street views) and its encoded images."""
    rng = np.random.default_rng([plan.seed, planned.index])
    scene_index = int(rng.integers(0, len(world.scenes)))
    scene = world.scenes[scene_index]
    jitter = rng.integers(-cfg.max_jitter_px, cfg.max_jitter_px + 1, size=2)
    tile_px = cfg.tile_px
    r0 = int(round(planned.row + jitter[0] - tile_px / 2))
    c0 = int(round(planned.col + jitter[1] - tile_px / 2))
    radiance = scene.window(r0, c0, tile_px, tile_px).image
    tile = sensor(radiance, out_px=cfg.size, rng=rng)
    heading: float | None = None
    text, alternatives, measured, style = "", {}, {}, None
    panorama: bytes | None = None
    described = planned.on_street and planned.split != "gallery"
    if planned.on_street:
        # Describing reads a window around the standing point, not the whole region.
        radius = view_radius_px(cfg.gsd)
        top, left, side = planned.row - radius, planned.col - radius, 2 * radius + 1
        local = world.map.window(top, left, side, side)
        heading, intersection = choose_heading(local, radius, radius, rng)
        if described:
            text, alternatives, measured, style = _texts(
                local,
                scene.window(top, left, side, side),
                Observer(radius, radius, heading),
                intersection,
                cfg,
                [plan.seed, planned.index],
            )
            if planned.split in ("train", "val") and not cfg.train_all_styles:
                alternatives.pop(HELD_OUT_STYLE, None)  # the held-out style is never trained on
    if described and cfg.street_views:
        panorama = _panorama(world, scene, planned, heading, cfg, [plan.seed, planned.index])
    n = plan.size_px
    east_m = (planned.col - n / 2 + 0.5) * cfg.gsd
    north_m = (n / 2 - planned.row - 0.5) * cfg.gsd
    lat, lon = offset_latlon(plan.centre_lat, plan.centre_lon, east_m, north_m)
    acq = scene.acquisition
    meta: dict[str, Any] = {
        "east_m": round(float(east_m), 2),
        "north_m": round(float(north_m), 2),
        "tile_m": cfg.tile_m,
        "scene": scene_index,
        "acquired": acq.when.isoformat(),
        "sun_azimuth_deg": round(acq.sun_azimuth_deg, 2),
        "sun_elevation_deg": round(acq.sun_elevation_deg, 2),
        "season": acq.season,
        "misregistration_px": [int(jitter[0]), int(jitter[1])],
        "climate": plan.style.climate,
        "difficulty": cfg.difficulty,
        "measured": {k: round(v, 4) for k, v in measured.items() if k.endswith("_all")},
    }
    if heading is not None:
        meta["heading_deg"] = round(heading, 1)
    if style is not None:
        meta["style"] = style
    if alternatives:
        meta["alt_texts"] = dict(sorted(alternatives.items()))
    record = Sample(
        id=planned.id,
        text=text,
        sat_path=sat,
        street_path=street if panorama is not None else None,
        lat=round(float(lat), 7),
        lon=round(float(lon), 7),
        region=plan.region.slug,
        continent=plan.region.continent,
        split=planned.split,
        meta=meta,
    ).to_dict()
    return MadeSample(record, encode_tile(tile, cfg.image_format, cfg.jpeg_quality), panorama)


def _panorama(
    world: RegionWorld,
    scene: Any,
    planned: PlannedSample,
    heading: float | None,
    cfg: SynthConfig,
    seed: list[int],
) -> bytes:
    """The street view at the standing point, facing the way the description faces."""
    view = _street_config(cfg)
    # The window the rays can reach, cut to the region (beyond it the renderer sees haze).
    radius = int(np.ceil(view.max_range_m / cfg.gsd)) + 4
    n_rows, n_cols = world.map.shape
    top, left = max(0, planned.row - radius), max(0, planned.col - radius)
    bottom = min(n_rows, planned.row + radius + 1)
    right = min(n_cols, planned.col + radius + 1)
    h, w = bottom - top, right - left
    image = render_panorama(
        world.map.window(top, left, h, w),
        scene.window(top, left, h, w),
        Observer(planned.row - top, planned.col - left, float(heading or 0.0)),
        view,
        np.random.default_rng([*seed, 2]),
    )
    return encode_tile(image, "jpg", cfg.jpeg_quality)


def _files_job(plan: RegionPlan, cfg: SynthConfig, root: Path) -> None:
    """Every tile of a region as a file, then its records as ``parts/<region>.jsonl``."""
    world = RegionWorld(plan, cfg)
    slug = plan.region.slug
    records: dict[int, dict[str, Any]] = {}
    for planned in plan.sweep():
        rel = f"sat/{slug}/{planned.id}.{cfg.image_format}"
        street = f"street/{slug}/{planned.id}.jpg"
        made = make_sample(plan, planned, world, cfg, rel, street)
        write_bytes(root / rel, made.tile)
        if made.street is not None:
            write_bytes(root / street, made.street)
        records[planned.index] = made.record
    lines = (json.dumps(records[i], ensure_ascii=False, sort_keys=True) for i in sorted(records))
    write_text(root / "parts" / f"{slug}.jsonl", "".join(line + "\n" for line in lines))


def _shards_job(
    plan: RegionPlan, cfg: SynthConfig, root: Path, on_shard: Callable[[], None] | None
) -> int:
    """Every missing shard of a region; returns how many were written.

    Samples are made in sweep order and held until their shard is complete, then the shard is
    written in one atomic step: at most the described shard and a gallery shard or two are
    held at a time.
    """
    units = plan.units()
    todo = {name: members for name, members in units.items() if not shard_path(root, name).exists()}
    if not todo:
        return 0
    world = RegionWorld(plan, cfg)
    held: dict[str, list[tuple[str, dict[str, bytes]]]] = {name: [] for name in todo}
    written = 0
    ext = cfg.image_format
    for planned in plan.sweep([s for members in todo.values() for s in members]):
        key = sample_key(planned.id)
        street = sat_path(planned.unit, key, "jpg").replace(".sat.jpg", ".street.jpg")
        made = make_sample(plan, planned, world, cfg, sat_path(planned.unit, key, ext), street)
        body = json.dumps(made.record, ensure_ascii=False, sort_keys=True).encode("utf-8")
        members = {"json": body, f"sat.{ext}": made.tile}
        if made.street is not None:
            members["street.jpg"] = made.street
        held[planned.unit].append((key, members))
        if len(held[planned.unit]) == len(todo[planned.unit]):
            write_shard(shard_path(root, planned.unit), held.pop(planned.unit))
            written += 1
            if on_shard is not None:
                on_shard()
    return written


def generate_region(
    region: Region,
    cfg: SynthConfig,
    root: Path,
    unseen: bool,
    on_shard: Callable[[], None] | None = None,
) -> int:
    """Generate what is missing of one region in ``root``; returns the output units written.

    With ``cfg.shards`` the units are shards (``on_shard()`` is called after each), otherwise
    the region's tiles and part file (one unit). ``unseen`` puts every described sample in
    ``test_unseen``.
    """
    plan = plan_region(region, cfg, unseen)
    if cfg.shards:
        return _shards_job(plan, cfg, root, on_shard)
    _files_job(plan, cfg, root)
    return 1


def _worker(args: tuple[Region, SynthConfig, str, bool]) -> int:
    region, cfg, out, unseen = args
    return generate_region(region, cfg, Path(out), unseen)


def _units_done(region: Region, cfg: SynthConfig, root: Path) -> tuple[int, int]:
    """(finished, total) output units of a region: its shards, or the region itself."""
    if cfg.shards:
        names = shard_names(region.slug, cfg)
        return sum(shard_path(root, n).exists() for n in names), len(names)
    return int((root / "parts" / f"{region.slug}.jsonl").exists()), 1


def _check_stamp(root: Path, payload: dict[str, Any], *, write: bool = True) -> None:
    stamp = root / "config.json"
    if root.exists() and not root.is_dir():
        raise PlanetlocError(f"{root}: --out must be a folder, and this is a file")
    if stamp.exists():
        try:
            previous = json.loads(stamp.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            previous = None
        if not isinstance(previous, dict):
            raise PlanetlocError(
                f"{stamp} is not a SynthCORE world description; nothing was overwritten: "
                "use a new --out folder"
            )
        if previous != payload:
            changed = sorted(k for k in payload | previous if previous.get(k) != payload.get(k))
            raise PlanetlocError(
                f"{root} holds a world made with other settings ({', '.join(changed)}); "
                "use a new --out folder"
            )
    elif root.exists():
        others = sorted(p.name for p in root.iterdir())
        if others:
            # Not a world this generator started: someone's files, which it must not touch.
            raise PlanetlocError(
                f"{root} is not empty and holds no SynthCORE world (found {others[0]!r}); "
                "nothing was overwritten: use a new --out folder"
            )
    if write and not stamp.exists():
        write_text(stamp, json.dumps(payload, indent=1) + "\n")


def _prepared(cfg: SynthConfig) -> tuple[SynthConfig, list[Region], dict[str, Any]]:
    cfg.check()
    regions = select_regions(cfg.regions)
    cfg = replace(cfg, region_slugs=tuple(r.slug for r in regions))
    return cfg, regions, {**cfg.payload(), "format_version": FORMAT_VERSION}


def check_world(cfg: SynthConfig, out: str | os.PathLike[str]) -> None:
    """Refuse, before any work, settings or a folder that :func:`generate_world` would."""
    _, _, payload = _prepared(cfg)
    _check_stamp(Path(out), payload, write=False)


def generate_world(
    cfg: SynthConfig,
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate (or finish generating) the world ``cfg`` in ``out``; return the manifest path.

    ``progress(done, total)`` is called as output units complete: regions when tiles are
    files, shards with ``cfg.shards`` (after every shard with one worker, after every region
    with several).
    """
    cfg, regions, payload = _prepared(cfg)
    root = Path(out)
    _check_stamp(root, payload, write=False)
    root.mkdir(parents=True, exist_ok=True)
    _check_stamp(root, payload)
    held_out = unseen_regions(regions, cfg.unseen_fraction)
    if cfg.shards:
        remove_stale_temporaries(root / SHARD_DIR)
    done = total = 0
    todo = []
    for region in regions:
        finished, units = _units_done(region, cfg, root)
        done, total = done + finished, total + units
        if finished < units:
            todo.append(region)
    if progress:
        progress(done, total)

    def advance(count: int = 1) -> None:
        nonlocal done
        done += count
        if progress:
            progress(done, total)

    jobs = [(r, cfg, str(root), r.slug in held_out) for r in todo]
    if workers > 1 and len(jobs) > 1:
        with get_context("fork").Pool(min(workers, len(jobs))) as pool:
            for count in pool.imap_unordered(_worker, jobs):
                advance(count)
    else:
        for region, _, _, unseen in jobs:
            if cfg.shards:
                generate_region(region, cfg, root, unseen, on_shard=advance)
            else:
                advance(generate_region(region, cfg, root, unseen))
    manifest, counts = (_shard_manifest if cfg.shards else _files_manifest)(cfg, root, regions)
    summary = {
        "config": payload,
        "manifest": manifest.name,
        "samples": sum(counts.values()),
        "splits": counts,
        "unseen_regions": sorted(held_out),
        "regions": [{"slug": r.slug, "name": r.name, "continent": r.continent} for r in regions],
    }
    if cfg.shards:
        summary["shards"] = total
    write_text(root / "world.json", json.dumps(summary, indent=1) + "\n")
    return manifest


def _files_manifest(
    cfg: SynthConfig, root: Path, regions: list[Region]
) -> tuple[Path, dict[str, int]]:
    samples = []
    for region in regions:
        with open(root / "parts" / f"{region.slug}.jsonl", encoding="utf-8") as fh:
            samples.extend(Sample(**json.loads(line)) for line in fh if line.strip())
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.split] = counts.get(s.split, 0) + 1
    return write_manifest(samples, root / f"manifest.{cfg.format}"), counts


def _shard_manifest(
    cfg: SynthConfig, root: Path, regions: list[Region]
) -> tuple[Path, dict[str, int]]:
    """The manifest holds exactly the shards' records, shard by shard, read back from them."""
    counts: dict[str, int] = {}

    def batches() -> Iterator[list[dict[str, Any]]]:
        for region in regions:
            for name in shard_names(region.slug, cfg):
                records = read_shard_records(shard_path(root, name))
                for r in records:
                    counts[r["split"]] = counts.get(r["split"], 0) + 1
                yield records

    manifest = write_records(batches(), root / f"manifest.{cfg.format}")
    return manifest, counts
