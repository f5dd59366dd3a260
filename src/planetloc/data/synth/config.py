"""The settings that determine a SynthCORE world, and the named presets.

``default`` is the small world the tests and the demo use. ``dense`` is an evaluation world:
a few regions holding thousands of gallery tiles each, so that the 100 gallery tiles nearest
a query are its neighbourhood rather than its whole region. ``xl`` covers all 225 catalog
regions at metropolitan extents (3 to 12 km, larger for larger cities) with 100k described
samples and about a million gallery tiles, written as WebDataset shards of JPEG tiles.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from planetloc.data.synth.describe import DIFFICULTY
from planetloc.errors import PlanetlocError
from planetloc.geo.regions import Region

IMAGE_FORMATS = ("png", "jpg")
# Settings added to SynthConfig after its first worlds, with the values those worlds had.
LATER_SETTINGS: dict[str, Any] = {"train_all_styles": False}
# Populations at which a region gets the smallest and the largest extent (log-linear between).
SMALL_CITY, LARGE_CITY = 1.0e5, 2.0e7


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines a world; two runs with equal configs give equal worlds.

    Extents: every region is ``extent_m`` across unless ``extent_max_m`` is set, in which
    case a region's extent grows with the log of its city's population from ``extent_m``
    (100k people or fewer) to ``extent_max_m`` (20M or more). Gallery tiles (``distractors``
    per region, split ``gallery``, no text) stand on streets like described samples, or
    anywhere in the region with ``gallery_on_streets=False``; they keep
    ``gallery_spacing_m`` from every other sample (``min_spacing_m`` when None). With
    ``shards`` the tiles and records go to WebDataset tars of ``shard_size`` samples instead
    of one file per tile. ``chunk_px`` is the side of the square chunks a region's map is
    computed in. Described samples get a street-level panorama (``street_views``) and their
    scene told in every description style (``alt_texts``: the sample's own text is in one of
    the training styles, the others go to ``meta.alt_texts``; training samples never carry
    the held-out style). ``train_all_styles`` trains the held-out style too (its texts become
    training texts like the others'): a world for measuring how far that style's texts can go
    when a model has seen them.
    """

    regions: int = 24
    per_region: int = 200
    size: int = 128
    seed: int = 0
    gsd: float = 1.5
    tile_m: float = 192.0
    extent_m: float = 1500.0
    extent_max_m: float | None = None
    scenes: int = 2
    difficulty: str = "medium"
    distractors: int = 20
    gallery_on_streets: bool = True
    gallery_spacing_m: float | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.25
    unseen_fraction: float = 0.15
    min_spacing_m: float = 30.0
    max_jitter_px: int = 3
    format: str = "jsonl"
    image_format: str = "png"
    jpeg_quality: int = 90
    shards: bool = False
    shard_size: int = 1000
    chunk_px: int = 256
    street_views: bool = True  # a 360-degree panorama per described sample
    street_width: int = 512  # panorama width in pixels (height: a quarter of it)
    alt_texts: bool = True  # every other style's phrasing of a scene, in meta.alt_texts
    train_all_styles: bool = False  # the held-out style is trained on too
    preset: str = "default"
    region_slugs: tuple[str, ...] = field(default=())

    def check(self) -> None:
        """Raise :class:`PlanetlocError` naming the first bad setting."""
        numbers = ("gsd", "tile_m", "extent_m", "min_spacing_m")
        for name in (*numbers, "val_fraction", "test_fraction", "unseen_fraction"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise PlanetlocError(f"{name} must be a finite number, got {value}")
        for name in ("extent_max_m", "gallery_spacing_m"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise PlanetlocError(f"{name} must be a finite number > 0, got {value}")
        if self.regions < 1 or self.per_region < 1:
            raise PlanetlocError("--regions and --per-region must be at least 1")
        if self.distractors < 0:
            raise PlanetlocError(f"--distractors must be at least 0, got {self.distractors}")
        if not 16 <= self.size <= 1024:
            raise PlanetlocError(f"--size must be between 16 and 1024 px, got {self.size}")
        if self.difficulty not in DIFFICULTY:
            raise PlanetlocError(
                f"--difficulty must be one of {', '.join(DIFFICULTY)}, got {self.difficulty!r}"
            )
        if self.format not in ("jsonl", "parquet"):
            raise PlanetlocError(f"--format must be jsonl or parquet, got {self.format!r}")
        if self.image_format not in IMAGE_FORMATS:
            raise PlanetlocError(
                f"--image-format must be one of {', '.join(IMAGE_FORMATS)}, "
                f"got {self.image_format!r}"
            )
        if not 1 <= self.jpeg_quality <= 95:
            raise PlanetlocError(
                f"--jpeg-quality must be between 1 and 95, got {self.jpeg_quality}"
            )
        if self.shard_size < 1:
            raise PlanetlocError(f"--shard-size must be at least 1, got {self.shard_size}")
        if not 64 <= self.street_width <= 4096 or self.street_width % 4:
            raise PlanetlocError(
                f"street_width must be a multiple of 4 in [64, 4096], got {self.street_width}"
            )
        if not 32 <= self.chunk_px <= 2048:
            raise PlanetlocError(f"chunk_px must be between 32 and 2048, got {self.chunk_px}")
        if self.gsd <= 0 or self.min_spacing_m <= 0 or self.scenes < 1:
            raise PlanetlocError("gsd, min_spacing_m and scenes must be positive")
        if self.tile_m * 1.6 > self.extent_m:
            raise PlanetlocError("the region extent must be well over the tile size")
        if self.extent_max_m is not None and self.extent_max_m < self.extent_m:
            raise PlanetlocError(
                f"extent_max_m ({self.extent_max_m}) must not be below extent_m ({self.extent_m})"
            )
        if not 0 <= self.val_fraction + self.test_fraction < 1:
            raise PlanetlocError("val and test fractions must add up to less than 1")
        if not 0 <= self.unseen_fraction <= 1:
            raise PlanetlocError(f"unseen_fraction must be in [0, 1], got {self.unseen_fraction}")

    @property
    def tile_px(self) -> int:
        return int(round(self.tile_m / self.gsd))

    @property
    def gallery_spacing(self) -> float:
        """Least distance in metres between a gallery tile's centre and any other sample's."""
        return self.min_spacing_m if self.gallery_spacing_m is None else self.gallery_spacing_m

    def payload(self) -> dict[str, Any]:
        """The settings as plain JSON values (what a world's ``config.json`` records)."""
        out = asdict(self)
        out["region_slugs"] = list(self.region_slugs)
        # Settings added after worlds were made are recorded only when set, so that those
        # worlds (which hold exactly what the default gives) keep their stamp.
        for name, default in LATER_SETTINGS.items():
            if out[name] == default:
                del out[name]
        return out


def region_extent_m(region: Region, cfg: SynthConfig) -> float:
    """Side of the square a region's map covers, in metres (grows with the city's size)."""
    if cfg.extent_max_m is None or cfg.extent_max_m == cfg.extent_m:
        return cfg.extent_m
    span = math.log10(LARGE_CITY) - math.log10(SMALL_CITY)
    t = (math.log10(max(region.population, 1)) - math.log10(SMALL_CITY)) / span
    t = min(max(t, 0.0), 1.0)
    return cfg.extent_m + t * (cfg.extent_max_m - cfg.extent_m)


PRESETS: dict[str, SynthConfig] = {
    "default": SynthConfig(),
    "dense": SynthConfig(
        regions=12,
        per_region=200,
        distractors=2000,
        extent_m=3000.0,
        gallery_on_streets=False,
        gallery_spacing_m=20.0,
        shards=True,
        image_format="png",
        preset="dense",
    ),
    "xl": SynthConfig(
        regions=225,
        per_region=445,
        distractors=4444,
        extent_m=3000.0,
        extent_max_m=12000.0,
        gallery_on_streets=False,
        gallery_spacing_m=20.0,
        shards=True,
        image_format="jpg",
        jpeg_quality=90,
        format="parquet",
        preset="xl",
    ),
}


def preset_config(name: str, **overrides: Any) -> SynthConfig:
    """The preset ``name`` with some settings replaced (e.g. ``distractors=1000``)."""
    if name not in PRESETS:
        raise PlanetlocError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(SynthConfig.__dataclass_fields__))
    if unknown:
        raise PlanetlocError(f"unknown SynthConfig setting {unknown[0]!r}")
    return replace(PRESETS[name], **overrides)
