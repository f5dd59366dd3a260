"""Settings of a dataset build: one YAML file with a section per stage, plus ``--set`` overrides.

Secrets never appear here: providers name the environment variable that holds a key or token.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from planetloc import __version__
from planetloc.errors import PlanetlocError
from planetloc.geo.regions import get_region
from planetloc.yaml_config import read_mapping

DEFAULT_USER_AGENT = f"planetloc/{__version__} (CORE-style dataset builder)"

# Mapillary's signed thumbnail URLs (API v4 image fields), smallest first.
THUMB_FIELDS = ("thumb_256_url", "thumb_1024_url", "thumb_2048_url", "thumb_original_url")


@dataclass
class HttpConfig:
    """Client behaviour shared by every provider (each provider sets its own limits)."""

    user_agent: str = DEFAULT_USER_AGENT
    timeout_s: float = 30.0
    attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 5.0
    max_outage_s: float = 300.0
    max_bytes: int = 64 * 2**20


@dataclass
class SampleConfig:
    regions: list[str] = field(default_factory=lambda: ["all"])
    per_region: int = 100
    quotas: dict[str, int] = field(default_factory=dict)  # region name/slug -> points
    min_spacing_m: float = 150.0
    land_only: bool = True
    points_file: str | None = None
    seed: int = 0


@dataclass
class StreetViewConfig:
    provider: str = "mapillary"  # mapillary | local | none | module:Class
    api_url: str = "https://graph.mapillary.com"
    token_env: str = "MAPILLARY_TOKEN"
    image_field: str = "thumb_2048_url"
    search_limit: int = 100  # results per Mapillary search (the API allows up to 2000)
    folder: str | None = None
    radius_m: float = 50.0
    prefer_pano: bool = True
    max_concurrency: int = 8
    rate_per_s: float = 20.0


@dataclass
class SatelliteConfig:
    provider: str = "xyz"  # xyz | local
    url: str = ""
    key_env: str | None = None
    key_header: str | None = None
    subdomains: list[str] = field(default_factory=list)
    tile_size: int = 256
    zoom: int = 18
    size_m: float = 200.0
    pixels: int = 512
    centre: str = "photo"  # photo | point
    folder: str | None = None
    crs: str = "EPSG:4326"  # of a local folder's world files / GeoTIFF tags
    quality: int = 92
    max_concurrency: int = 8
    rate_per_s: float = 50.0


@dataclass
class DescribeConfig:
    base_url: str = "http://localhost:8000/v1"
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    api_key_env: str | None = None
    prompt_file: str | None = None
    min_words: int = 40
    max_words: int = 250
    max_tokens: int = 512
    max_tokens_field: str = "max_tokens"  # or max_completion_tokens (OpenAI's own API)
    temperature: float = 0.2
    attempts: int = 3
    image_max_side: int = 1024
    require_first_person: bool = True
    banned_terms: list[str] = field(default_factory=list)
    timeout_s: float = 120.0
    max_concurrency: int = 8
    rate_per_s: float = 10.0


@dataclass
class WriteConfig:
    manifest: str = "manifest.parquet"
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    unseen_fraction: float = 0.15
    webdataset: bool = False
    shard_size: int = 1000
    seed: int = 0


SECTIONS = {
    "http": HttpConfig,
    "sample": SampleConfig,
    "streetview": StreetViewConfig,
    "satellite": SatelliteConfig,
    "describe": DescribeConfig,
    "write": WriteConfig,
}


@dataclass
class BuildConfig:
    http: HttpConfig = field(default_factory=HttpConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    streetview: StreetViewConfig = field(default_factory=StreetViewConfig)
    satellite: SatelliteConfig = field(default_factory=SatelliteConfig)
    describe: DescribeConfig = field(default_factory=DescribeConfig)
    write: WriteConfig = field(default_factory=WriteConfig)

    @property
    def with_street(self) -> bool:
        """Whether samples get street photos and descriptions (else: a satellite gallery)."""
        return self.streetview.provider != "none"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        choices = {
            "satellite.provider": (self.satellite.provider, ("xyz", "local")),
            "satellite.centre": (self.satellite.centre, ("photo", "point")),
            "satellite.crs": (self.satellite.crs, ("EPSG:4326", "EPSG:3857")),
            "describe.max_tokens_field": (
                self.describe.max_tokens_field,
                ("max_tokens", "max_completion_tokens"),
            ),
        }
        if self.streetview.provider == "mapillary":
            choices["streetview.image_field"] = (self.streetview.image_field, THUMB_FIELDS)
        street = self.streetview.provider
        if street not in ("mapillary", "local", "none") and ":" not in street:
            raise PlanetlocError(
                f"streetview.provider = {street!r} is not one of mapillary, local, none, "
                "or a 'module:Class' provider"
            )
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise PlanetlocError(f"{key} = {value!r} is not one of {', '.join(allowed)}")
        positive = {
            "sample.per_region": self.sample.per_region,
            "satellite.pixels": self.satellite.pixels,
            "satellite.size_m": self.satellite.size_m,
            "describe.attempts": self.describe.attempts,
            "describe.max_tokens": self.describe.max_tokens,
            "http.attempts": self.http.attempts,
            "write.shard_size": self.write.shard_size,
        }
        for section in ("streetview", "satellite", "describe"):
            part = getattr(self, section)
            positive[f"{section}.max_concurrency"] = part.max_concurrency
            positive[f"{section}.rate_per_s"] = part.rate_per_s
        for section in SECTIONS:
            for f in fields(getattr(self, section)):
                value = getattr(getattr(self, section), f.name)
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue
                if not math.isfinite(value):
                    raise PlanetlocError(
                        f"{section}.{f.name} must be a finite number, got {value!r}"
                    )
                if value < 0:
                    raise PlanetlocError(f"{section}.{f.name} must not be negative, got {value!r}")
        for key, value in positive.items():
            if not value > 0:
                raise PlanetlocError(f"{key} must be positive, got {value!r}")
        for region, quota in self.sample.quotas.items():
            get_region(region)  # an unknown name is an error, not a silent default
            if isinstance(quota, bool) or not isinstance(quota, int) or quota < 0:
                raise PlanetlocError(f"sample.quotas[{region!r}] must be a count, got {quota!r}")
        if not 1 <= self.streetview.search_limit <= 2000:
            raise PlanetlocError(
                f"streetview.search_limit must be in 1..2000 (the Mapillary API's maximum), "
                f"got {self.streetview.search_limit}"
            )
        if not 0 <= self.satellite.zoom <= 23:
            raise PlanetlocError(f"satellite.zoom must be in 0..23, got {self.satellite.zoom}")
        if self.describe.min_words >= self.describe.max_words:
            raise PlanetlocError("describe.min_words must be below describe.max_words")
        split = self.write.val_fraction + self.write.test_fraction
        if not 0 <= split < 1 or not 0 <= self.write.unseen_fraction < 1:
            raise PlanetlocError("write fractions must be in [0, 1) and val + test below 1")
        if self.satellite.provider == "xyz" and not self.satellite.url:
            raise PlanetlocError("satellite.url is empty: give an XYZ/WMTS URL template")


def _assign(cfg: BuildConfig, key: str, value: Any) -> None:
    section, _, name = key.partition(".")
    if section not in SECTIONS or not name:
        raise PlanetlocError(f"unknown build setting {key!r} (sections: {', '.join(SECTIONS)})")
    part = getattr(cfg, section)
    known = {f.name: f for f in fields(part)}
    if name not in known:
        raise PlanetlocError(
            f"unknown build setting {key!r} (known in {section}: {', '.join(sorted(known))})"
        )
    current = getattr(part, name)
    if isinstance(current, list) and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(current, bool) and not isinstance(value, bool):
        raise PlanetlocError(f"{key} must be true or false, got {value!r}")
    elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif current is not None and not isinstance(value, type(current)):
        raise PlanetlocError(f"{key} must be a {type(current).__name__}, got {value!r}")
    setattr(part, name, value)


# Settings that change how fast or from where a stage works, not what it produces.
_NOT_OUTPUT = {
    "max_concurrency", "rate_per_s", "timeout_s", "attempts", "regions", "api_url", "base_url",
    "token_env", "key_env", "api_key_env", "key_header", "subdomains", "search_limit",
    "max_tokens_field",
}  # fmt: skip


def output_settings(cfg: BuildConfig, stage: str) -> dict[str, Any]:
    """The part of a stage's section its outputs depend on (see ``WorkStore.check_settings``)."""
    section = asdict(getattr(cfg, stage))
    if stage == "describe":
        from planetloc.builder.prompt import load_prompt

        section["prompt_file"] = load_prompt(cfg.describe).digest  # the text, not the path
    return {k: v for k, v in section.items() if k not in _NOT_OUTPUT}


def key_env_names(cfg: BuildConfig) -> list[str]:
    """The environment variables the config names for keys and tokens."""
    names = (cfg.satellite.key_env, cfg.streetview.token_env, cfg.describe.api_key_env)
    return [n for n in names if n]


def secrets_of(cfg: BuildConfig) -> list[str]:
    """Values of the environment variables the config names for keys and tokens."""
    return [os.environ[n] for n in key_env_names(cfg) if os.environ.get(n)]


def secret_from_env(env: str | None, what: str) -> str | None:
    """The value of ``env``; a clear error when it is named but unset."""
    if not env:
        return None
    value = os.environ.get(env, "")
    if not value:
        raise PlanetlocError(f"{what}: environment variable {env} is not set")
    return value


def load_build_config(
    path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> BuildConfig:
    """Defaults, then the YAML file (``section: {key: value}``), then ``section.key`` overrides."""
    cfg = BuildConfig()
    if path is not None:
        for section, values in read_mapping(path, "build config").items():
            if not isinstance(values, dict):
                raise PlanetlocError(f"{path}: section {section!r} must be a mapping")
            for name, value in values.items():
                _assign(cfg, f"{section}.{name}", value)
    for key, value in (overrides or {}).items():
        _assign(cfg, key, value)
    cfg.check()
    return cfg


def config_from_dict(data: dict[str, Any]) -> BuildConfig:
    """Rebuild a config written by :meth:`BuildConfig.to_dict`."""
    cfg = BuildConfig()
    for section, values in data.items():
        for name, value in values.items():
            setattr(getattr(cfg, section), name, value)
    return cfg
