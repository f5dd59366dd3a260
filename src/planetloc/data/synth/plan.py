"""Where a region's samples are, before any pixel exists: extent, centre, acquisitions,
standing points, splits, and the shard each sample goes to.

A plan depends on the world's settings and the region alone, so every worker and every rerun
agrees on which sample is which and where it is written. Described samples stand on streets
(they need a heading and something to describe); gallery tiles stand on streets too or, for
the large worlds, anywhere in the region. Points keep a minimum distance from each other.

Samples are generated in *sweep order*: the Z-order of the map chunk they stand in, so that
consecutive samples reuse the same computed chunks. Gallery shards are cut along that order
and each covers one compact part of its region.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from planetloc.data.synth.config import SynthConfig, region_extent_m
from planetloc.data.synth.observation import VIEW_RADIUS_M
from planetloc.data.synth.render import Acquisition, acquire, draw_acquisition
from planetloc.data.synth.style import RegionStyle, derive_style
from planetloc.data.synth.world import RegionField
from planetloc.errors import PlanetlocError
from planetloc.geo.regions import Region
from planetloc.stable_hash import stable_int

DESCRIBED, GALLERY = "described", "gallery"
_MAX_TRIES_PER_POINT = 100
# A region is taken to be full when this many candidates in a row are too close to others.
_MAX_MISSES_IN_A_ROW = 10_000


def region_seed(seed: int, slug: str) -> int:
    """The seed every random draw of one region derives from."""
    return stable_int(seed, slug)


def unseen_regions(regions: list[Region], fraction: float) -> set[str]:
    """Regions held out entirely (split ``test_unseen``): every k-th, at least one from 5."""
    count = int(round(len(regions) * fraction))
    if count == 0:
        return set()
    step = len(regions) / count
    return {regions[int(i * step + step / 2)].slug for i in range(count)}


def view_radius_px(gsd: float) -> int:
    """Half-size of the map window a description reads (its view plus the heading probe)."""
    return int(max(VIEW_RADIUS_M, 30.0) / gsd) + 2


def shard_names(slug: str, cfg: SynthConfig) -> list[str]:
    """Names of a region's shards, from the sample counts alone."""
    described = math.ceil(cfg.per_region / cfg.shard_size)
    gallery = math.ceil(cfg.distractors / cfg.shard_size)
    return [f"{slug}-{DESCRIBED}-{k:04d}" for k in range(described)] + [
        f"{slug}-{GALLERY}-{k:04d}" for k in range(gallery)
    ]


@dataclass(frozen=True)
class PlannedSample:
    """One sample of a region: where it stands (region pixel), its split and its output unit."""

    index: int
    id: str
    row: int
    col: int
    split: str
    on_street: bool
    unit: str  # the shard it goes to, or the region's slug when tiles are single files


@dataclass
class RegionPlan:
    """A region's style, map rules, acquisitions and samples, drawn from its seed alone."""

    region: Region
    seed: int
    style: RegionStyle
    field: RegionField
    centre_lat: float
    centre_lon: float
    acquisitions: list[Acquisition]
    samples: list[PlannedSample]  # by index: described first, then gallery
    chunk_px: int

    @property
    def size_px(self) -> int:
        return self.field.size_px

    def sweep(self, samples: list[PlannedSample] | None = None) -> list[PlannedSample]:
        """``samples`` (default: all) in the order that reuses computed chunks best."""
        c = self.chunk_px
        chosen = self.samples if samples is None else samples
        return sorted(chosen, key=lambda s: (_zorder(s.row // c, s.col // c), s.row, s.col))

    def units(self) -> dict[str, list[PlannedSample]]:
        """Samples of each output unit (shard or region), each list in sweep order."""
        out: dict[str, list[PlannedSample]] = {}
        for s in self.sweep():
            out.setdefault(s.unit, []).append(s)
        return out


def _zorder(i: int, j: int) -> int:
    code = 0
    for bit in range(20):
        code |= ((i >> bit) & 1) << (2 * bit + 1) | ((j >> bit) & 1) << (2 * bit)
    return code


class _Spacing:
    """Points already placed, on a grid of cells small enough to hold one point each."""

    def __init__(self, least_px: float) -> None:
        self.cell = least_px / math.sqrt(2)
        self.grid: dict[tuple[int, int], tuple[int, int]] = {}

    def add_if_clear(self, r: int, c: int, spacing_px: float) -> bool:
        key = (int(r // self.cell), int(c // self.cell))
        reach = int(math.ceil(spacing_px / self.cell))
        limit = spacing_px * spacing_px
        for dr in range(-reach, reach + 1):
            for dc in range(-reach, reach + 1):
                other = self.grid.get((key[0] + dr, key[1] + dc))
                if other is not None and (other[0] - r) ** 2 + (other[1] - c) ** 2 < limit:
                    return False
        self.grid[key] = (r, c)
        return True


def _place(
    rng: np.random.Generator,
    count: int,
    *,
    size_px: int,
    margin_px: int,
    spacing_px: float,
    taken: _Spacing,
    accept: Callable[[np.ndarray, np.ndarray], np.ndarray] | None,
) -> list[tuple[int, int]]:
    """Up to ``count`` random pixels ``margin_px`` inside the region, ``spacing_px`` apart."""
    chosen: list[tuple[int, int]] = []
    tries = misses = 0
    while (
        len(chosen) < count
        and tries < _MAX_TRIES_PER_POINT * count
        and misses < _MAX_MISSES_IN_A_ROW
    ):
        batch = max(256, 4 * (count - len(chosen)))
        tries += batch
        rows = rng.integers(margin_px, size_px - margin_px, size=batch)
        cols = rng.integers(margin_px, size_px - margin_px, size=batch)
        if accept is not None:
            keep = accept(rows, cols)
            rows, cols = rows[keep], cols[keep]
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if not taken.add_if_clear(r, c, spacing_px):
                misses += 1
                if misses == _MAX_MISSES_IN_A_ROW:
                    break
                continue
            misses = 0
            chosen.append((r, c))
            if len(chosen) == count:
                break
    return chosen


def plan_region(region: Region, cfg: SynthConfig, unseen: bool) -> RegionPlan:
    """Everything about a region's samples that does not need its pixels."""
    seed = region_seed(cfg.seed, region.slug)
    rng = np.random.default_rng(seed)
    style = derive_style(region, rng)
    size_px = int(round(region_extent_m(region, cfg) / cfg.gsd))
    field = RegionField(style, rng, size_px=size_px, gsd=cfg.gsd)
    # The synthetic neighbourhood sits somewhere inside the city's bounding box.
    west, south, east, north = region.bbox
    centre_lat = float(rng.uniform(south + 0.25 * (north - south), north - 0.25 * (north - south)))
    centre_lon = float(rng.uniform(west + 0.25 * (east - west), east - 0.25 * (east - west)))
    acquisitions = [
        acquire(centre_lat, centre_lon, draw_acquisition(centre_lat, centre_lon, rng), rng)
        for _ in range(cfg.scenes)
    ]
    margin = max(cfg.tile_px // 2 + cfg.max_jitter_px + 2, view_radius_px(cfg.gsd) + 1)
    if 2 * margin >= size_px:
        raise PlanetlocError(
            f"region {region.slug}: a {size_px * cfg.gsd:.0f} m extent leaves no room for tiles"
        )
    described_px = cfg.min_spacing_m / cfg.gsd
    gallery_px = cfg.gallery_spacing / cfg.gsd
    taken = _Spacing(min(described_px, gallery_px))
    where = {"size_px": size_px, "margin_px": margin, "taken": taken}
    points = _place(rng, cfg.per_region, spacing_px=described_px, accept=field.streets_at, **where)
    # Splits are drawn before any gallery point, so a world that differs only in its gallery
    # (a denser one for evaluation) holds exactly the same described samples.
    n_test = int(round(cfg.per_region * cfg.test_fraction))
    n_val = int(round(cfg.per_region * cfg.val_fraction))
    splits = ["test"] * n_test + ["val"] * n_val + ["train"] * (cfg.per_region - n_test - n_val)
    splits = [str(s) for s in rng.permutation(splits)]
    if unseen:
        splits = ["test_unseen"] * cfg.per_region
    gallery_accept = field.streets_at if cfg.gallery_on_streets else None
    points += _place(rng, cfg.distractors, spacing_px=gallery_px, accept=gallery_accept, **where)
    total = cfg.per_region + cfg.distractors
    if len(points) < total:
        raise PlanetlocError(
            f"region {region.slug}: only {len(points)} of {total} points fit at "
            f"{cfg.min_spacing_m:g} m spacing; lower --per-region or --distractors"
        )
    splits += ["gallery"] * cfg.distractors
    width = max(5, len(str(total - 1)))
    samples = [
        PlannedSample(
            index=i,
            id=f"{region.slug}-{i:0{width}d}",
            row=r,
            col=c,
            split=split,
            on_street=i < cfg.per_region or cfg.gallery_on_streets,
            unit=region.slug,
        )
        for i, ((r, c), split) in enumerate(zip(points, splits, strict=True))
    ]
    plan = RegionPlan(
        region=region,
        seed=seed,
        style=style,
        field=field,
        centre_lat=centre_lat,
        centre_lon=centre_lon,
        acquisitions=acquisitions,
        samples=samples,
        chunk_px=cfg.chunk_px,
    )
    if cfg.shards:
        plan.samples = _assign_shards(plan, cfg)
    return plan


def _assign_shards(plan: RegionPlan, cfg: SynthConfig) -> list[PlannedSample]:
    slug = plan.region.slug
    unit_of: dict[int, str] = {}
    for kind, group in (
        (DESCRIBED, [s for s in plan.samples if s.split != "gallery"]),
        (GALLERY, [s for s in plan.samples if s.split == "gallery"]),
    ):
        for pos, s in enumerate(plan.sweep(group)):
            unit_of[s.index] = f"{slug}-{kind}-{pos // cfg.shard_size:04d}"
    return [
        PlannedSample(s.index, s.id, s.row, s.col, s.split, s.on_street, unit_of[s.index])
        for s in plan.samples
    ]
