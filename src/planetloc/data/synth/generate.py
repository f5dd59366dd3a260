"""Generate a SynthCORE world: tiles, descriptions and a manifest in the sample schema.

Layout of the output folder::

    OUT/world.json              the configuration and a summary (written last)
    OUT/manifest.jsonl          every sample (or .parquet)
    OUT/sat/<region>/<id>.png   satellite tiles
    OUT/parts/<region>.jsonl    per-region records; a region with a part is done

Regions are independent and seeded from (seed, region), so a killed run resumes where it
stopped and any number of workers produce the same world.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from planetloc.atomic import write_bytes, write_text
from planetloc.data.manifest import write_manifest
from planetloc.data.schema import Sample
from planetloc.data.synth.describe import DIFFICULTY, Observer, choose_heading, describe
from planetloc.data.synth.render import crop_tile, draw_acquisition, render_scene
from planetloc.data.synth.style import derive_style
from planetloc.data.synth.world import ROAD, build_region_map
from planetloc.errors import PlanetlocError
from planetloc.geo.coords import offset_latlon
from planetloc.geo.regions import Region, select_regions
from planetloc.stable_hash import stable_int

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a world; two runs with equal configs give equal worlds."""

    regions: int = 24
    per_region: int = 200
    size: int = 128
    seed: int = 0
    gsd: float = 1.5
    tile_m: float = 192.0
    extent_m: float = 1500.0
    scenes: int = 2
    difficulty: str = "medium"
    distractors: int = 20
    val_fraction: float = 0.1
    test_fraction: float = 0.25
    unseen_fraction: float = 0.15
    min_spacing_m: float = 30.0
    max_jitter_px: int = 3
    format: str = "jsonl"
    region_slugs: tuple[str, ...] = field(default=())

    def check(self) -> None:
        if self.regions < 1 or self.per_region < 1:
            raise PlanetlocError("--regions and --per-region must be at least 1")
        if not 16 <= self.size <= 1024:
            raise PlanetlocError(f"--size must be between 16 and 1024 px, got {self.size}")
        if self.difficulty not in DIFFICULTY:
            raise PlanetlocError(
                f"--difficulty must be one of {', '.join(DIFFICULTY)}, got {self.difficulty!r}"
            )
        if self.format not in ("jsonl", "parquet"):
            raise PlanetlocError(f"--format must be jsonl or parquet, got {self.format!r}")
        if self.tile_m * 1.6 > self.extent_m:
            raise PlanetlocError("the region extent must be well over the tile size")
        if not 0 <= self.val_fraction + self.test_fraction < 1:
            raise PlanetlocError("val and test fractions must add up to less than 1")

    @property
    def tile_px(self) -> int:
        return int(round(self.tile_m / self.gsd))


def region_seed(seed: int, slug: str) -> int:
    return stable_int(seed, slug)


def unseen_regions(regions: list[Region], fraction: float) -> set[str]:
    """Regions held out entirely (split ``test_unseen``): every k-th, at least one from 5."""
    count = int(round(len(regions) * fraction))
    if count == 0:
        return set()
    step = len(regions) / count
    return {regions[int(i * step + step / 2)].slug for i in range(count)}


def _sample_points(
    road: np.ndarray, count: int, margin_px: int, spacing_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Up to ``count`` road pixels at least ``spacing_px`` apart, ``margin_px`` from the edge."""
    n = road.shape[0]
    inner = road[margin_px : n - margin_px, margin_px : n - margin_px]
    candidates = np.argwhere(inner) + margin_px
    if len(candidates) == 0:
        raise PlanetlocError("region has no streets to stand on")
    rng.shuffle(candidates)
    cell = spacing_px / np.sqrt(2)
    grid: dict[tuple[int, int], tuple[int, int]] = {}
    chosen: list[tuple[int, int]] = []
    for r, c in candidates:
        key = (int(r // cell), int(c // cell))
        ok = True
        for dr in (-2, -1, 0, 1, 2):
            for dc in (-2, -1, 0, 1, 2):
                other = grid.get((key[0] + dr, key[1] + dc))
                if other is not None and (other[0] - r) ** 2 + (other[1] - c) ** 2 < spacing_px**2:
                    ok = False
                    break
            if not ok:
                break
        if ok:
            grid[key] = (int(r), int(c))
            chosen.append((int(r), int(c)))
            if len(chosen) == count:
                break
    return np.asarray(chosen, dtype=np.int64)


def generate_region(
    region: Region, cfg: SynthConfig, out: Path, unseen: bool
) -> list[dict[str, Any]]:
    """Generate every sample of one region, write its tiles, return its manifest records."""
    rng = np.random.default_rng(region_seed(cfg.seed, region.slug))
    style = derive_style(region, rng)
    region_map = build_region_map(style, rng, extent_m=cfg.extent_m, gsd=cfg.gsd)
    # The synthetic neighbourhood sits somewhere inside the city's bounding box.
    west, south, east, north = region.bbox
    centre_lat = float(rng.uniform(south + 0.25 * (north - south), north - 0.25 * (north - south)))
    centre_lon = float(rng.uniform(west + 0.25 * (east - west), east - 0.25 * (east - west)))
    scenes = [
        render_scene(
            region_map, centre_lat, centre_lon, draw_acquisition(centre_lat, centre_lon, rng), rng
        )
        for _ in range(cfg.scenes)
    ]
    margin = cfg.tile_px // 2 + cfg.max_jitter_px + 2
    total = cfg.per_region + cfg.distractors
    points = _sample_points(region_map.cls == ROAD, total, margin, cfg.min_spacing_m / cfg.gsd, rng)
    if len(points) < total:
        raise PlanetlocError(
            f"region {region.slug}: only {len(points)} points fit at {cfg.min_spacing_m} m "
            "spacing; lower --per-region or --distractors"
        )
    n_test = int(round(cfg.per_region * cfg.test_fraction))
    n_val = int(round(cfg.per_region * cfg.val_fraction))
    splits = ["test"] * n_test + ["val"] * n_val + ["train"] * (cfg.per_region - n_test - n_val)
    splits = list(rng.permutation(splits))
    if unseen:
        splits = ["test_unseen"] * cfg.per_region
    splits += ["gallery"] * cfg.distractors
    records = []
    tile_dir = out / "sat" / region.slug
    tile_dir.mkdir(parents=True, exist_ok=True)
    h = region_map.shape[0]
    for index, ((row, col), split) in enumerate(zip(points, splits, strict=True)):
        sid = f"{region.slug}-{index:05d}"
        scene_index = int(rng.integers(0, len(scenes)))
        scene = scenes[scene_index]
        jitter = rng.integers(-cfg.max_jitter_px, cfg.max_jitter_px + 1, size=2)
        tile = crop_tile(
            scene, row + jitter[0], col + jitter[1], tile_px=cfg.tile_px, out_px=cfg.size, rng=rng
        )
        heading, intersection = choose_heading(region_map, int(row), int(col), rng)
        text, measured = "", {}
        if split != "gallery":
            text, measured = describe(
                region_map,
                scene,
                Observer(int(row), int(col), heading),
                intersection=intersection,
                difficulty=cfg.difficulty,
                rng=rng,
            )
        buf = io.BytesIO()
        Image.fromarray(tile).save(buf, format="PNG", compress_level=1)
        rel = f"sat/{region.slug}/{sid}.png"
        write_bytes(out / rel, buf.getvalue())
        east_m = (col - h / 2 + 0.5) * cfg.gsd
        north_m = (h / 2 - row - 0.5) * cfg.gsd
        lat, lon = offset_latlon(centre_lat, centre_lon, east_m, north_m)
        records.append(
            Sample(
                id=sid,
                text=text,
                sat_path=rel,
                lat=round(float(lat), 7),
                lon=round(float(lon), 7),
                region=region.slug,
                continent=region.continent,
                split=split,
                meta={
                    "east_m": round(float(east_m), 2),
                    "north_m": round(float(north_m), 2),
                    "scene": scene_index,
                    "acquired": scene.when.isoformat(),
                    "sun_azimuth_deg": round(scene.sun_azimuth_deg, 2),
                    "sun_elevation_deg": round(scene.sun_elevation_deg, 2),
                    "season": scene.season,
                    "heading_deg": round(heading, 1),
                    "misregistration_px": [int(jitter[0]), int(jitter[1])],
                    "climate": style.climate,
                    "difficulty": cfg.difficulty,
                    "measured": {k: round(v, 4) for k, v in measured.items() if k.endswith("_all")},
                },
            ).to_dict()
        )
    return records


def _worker(args: tuple[Region, SynthConfig, str, bool]) -> str:
    region, cfg, out, unseen = args
    records = generate_region(region, cfg, Path(out), unseen)
    part = Path(out) / "parts" / f"{region.slug}.jsonl"
    write_text(
        part, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    )
    return region.slug


def _config_payload(cfg: SynthConfig) -> dict[str, Any]:
    payload = asdict(cfg)
    payload["region_slugs"] = list(cfg.region_slugs)
    payload["format_version"] = FORMAT_VERSION
    return payload


def generate_world(
    cfg: SynthConfig,
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate (or finish generating) the world ``cfg`` in ``out``; return the manifest path.

    ``progress(done, total)`` is called as regions complete.
    """
    cfg.check()
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    regions = select_regions(cfg.regions)
    cfg = SynthConfig(**{**asdict(cfg), "region_slugs": tuple(r.slug for r in regions)})
    stamp = root / "config.json"
    payload = _config_payload(cfg)
    if stamp.exists():
        previous = json.loads(stamp.read_text(encoding="utf-8"))
        if previous != payload:
            changed = sorted(k for k in payload if previous.get(k) != payload[k])
            raise PlanetlocError(
                f"{root} holds a world made with other settings ({', '.join(changed)}); "
                "use a new --out folder"
            )
    else:
        write_text(stamp, json.dumps(payload, indent=1) + "\n")
    held_out = unseen_regions(regions, cfg.unseen_fraction)
    parts = root / "parts"
    todo = [r for r in regions if not (parts / f"{r.slug}.jsonl").exists()]
    done = len(regions) - len(todo)
    if progress:
        progress(done, len(regions))
    jobs = [(r, cfg, str(root), r.slug in held_out) for r in todo]
    if workers > 1 and len(jobs) > 1:
        with get_context("fork").Pool(min(workers, len(jobs))) as pool:
            for _ in pool.imap_unordered(_worker, jobs):
                done += 1
                if progress:
                    progress(done, len(regions))
    else:
        for job in jobs:
            _worker(job)
            done += 1
            if progress:
                progress(done, len(regions))
    samples = []
    for region in regions:
        with open(parts / f"{region.slug}.jsonl", encoding="utf-8") as fh:
            samples.extend(Sample(**json.loads(line)) for line in fh if line.strip())
    manifest = write_manifest(samples, root / f"manifest.{cfg.format}")
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.split] = counts.get(s.split, 0) + 1
    summary = {
        "config": payload,
        "manifest": manifest.name,
        "samples": len(samples),
        "splits": counts,
        "unseen_regions": sorted(held_out),
        "regions": [{"slug": r.slug, "name": r.name, "continent": r.continent} for r in regions],
    }
    write_text(root / "world.json", json.dumps(summary, indent=1) + "\n")
    return manifest
