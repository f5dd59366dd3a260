"""Training configuration: defaults, a method preset, a YAML file, then ``key=value`` overrides.

Every value is type-checked and range-checked here, once: a string where a number belongs, a
fractional step count, or a non-finite number stops with one line naming the setting.
"""

from __future__ import annotations

import os
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from planetloc.errors import PlanetlocError
from planetloc.model.physics import BRANCHES
from planetloc.model.planet import ModelConfig
from planetloc.model.signatures import SignatureConfig
from planetloc.yaml_config import coerce, read_mapping

# Recipes compared under the same trainer, data and budget. They are named for what they are:
# ``itc-77`` and ``itc-long`` are the image-text contrastive recipe (CLIP's loss) with text cut
# at 77 tokens or read at full length (CrossText2Loc's extended positions); the backbone is
# whatever ``model.backbone`` says, not necessarily CLIP.
METHODS: dict[str, dict[str, Any]] = {
    "itc-77": {"model.max_tokens": 77, "lambda_phy": 0.0},
    "itc-long": {"model.max_tokens": 248, "lambda_phy": 0.0},
    "planet": {"model.max_tokens": 248, "lambda_phy": 0.5},
}
QUERIES = ("text", "image", "joint")


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data."""

    data: str = ""
    out: str = "runs/train"
    method: str = "planet"
    model: ModelConfig = field(default_factory=ModelConfig)
    lambda_phy: float = 0.5
    lambda_warmup_steps: int = 0  # L_phy weight ramps linearly from 0 over these steps
    branches: tuple[str, ...] = BRANCHES
    batch_size: int = 64
    steps: int = 400
    lr: float = 1e-3
    backbone_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_steps: int = 40
    grad_clip: float = 1.0
    seed: int = 0
    save_every: int = 100
    eval_every: int = 100
    log_every: int = 10
    amp: str = "auto"  # bf16 autocast: "auto" (on CUDA only), "bf16" (any device) or "off"
    device: str = "auto"
    augment: bool = True  # tile shifts of a few pixels and sensor gain/offset; never rotations
    workers: int = 2  # DataLoader worker processes decoding images (0: in the training process)
    shuffle_buffer: int = 2048
    text_cache: str = "auto"  # frozen trunk: "auto" (on disk beside the data), "off", or a folder
    signature_cache: str = "auto"  # tiles' signatures: "auto" (beside the data), "off", a folder
    alt_text_prob: float = 0.0  # chance of reading another phrasing of the same scene
    # Description styles (meta.style, meta.alt_texts keys) never read in training, so that a
    # style can be held out of a world's seen styles to measure, on val, how a method does on
    # a style it never saw (a sample written in one reads another of its phrasings).
    exclude_styles: tuple[str, ...] = ()
    informal_prob: float = 0.0  # chance of reading a text's informal rewrite (data.informal)
    neighbours: int = 0  # >1: batches of groups of geographic neighbours (hard negatives)
    # Joint (text + street view) runs: weights of the view-satellite and joint-query losses
    # beside the text objective. Both at 1 let the street losses outweigh the text loss two to
    # one on the shared satellite tower; lower values keep the text branch closer to a
    # text-only run. Image-only runs have the view loss alone, unweighted.
    view_weight: float = 1.0
    joint_weight: float = 1.0
    on_bad_sample: str = "fail"  # "skip": count and skip undecodable or incomplete samples
    select_alpha: bool = True  # after training, choose the re-ranking weight on the val split

    def check(self) -> None:
        """Refuse settings that cannot train, with one line naming the setting."""
        if self.method not in METHODS:
            raise PlanetlocError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        bad = [b for b in self.branches if b not in BRANCHES]
        if bad:
            raise PlanetlocError(f"unknown physical branch {bad[0]!r}; use {', '.join(BRANCHES)}")
        positive = ("steps", "batch_size", "save_every", "log_every", "shuffle_buffer")
        for name in positive:
            if getattr(self, name) < 1:
                raise PlanetlocError(
                    f"setting {name!r} must be at least 1, got {getattr(self, name)}"
                )
        non_negative = (
            "lambda_phy",
            "lambda_warmup_steps",
            "lr",
            "backbone_lr",
            "weight_decay",
            "warmup_steps",
            "grad_clip",
            "eval_every",
            "workers",
            "neighbours",
            "view_weight",
            "joint_weight",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise PlanetlocError(
                    f"setting {name!r} must not be negative, got {getattr(self, name)}"
                )
        if self.batch_size < 2:
            raise PlanetlocError("batch_size must be at least 2 for a contrastive loss")
        for name in ("alt_text_prob", "informal_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise PlanetlocError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.amp not in ("auto", "bf16", "off"):
            raise PlanetlocError(f"amp must be auto, bf16 or off, got {self.amp!r}")
        if self.on_bad_sample not in ("fail", "skip"):
            raise PlanetlocError(f"on_bad_sample must be fail or skip, got {self.on_bad_sample!r}")
        if self.neighbours and self.batch_size % self.neighbours:
            raise PlanetlocError(
                f"batch_size {self.batch_size} must be a multiple of neighbours {self.neighbours}"
            )
        if self.model.query == "joint" and self.view_weight == 0 and self.joint_weight == 0:
            raise PlanetlocError(
                "a joint run needs view_weight or joint_weight above 0: with both at 0 the "
                "street-view tower never learns"
            )
        self.model.check()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["branches"] = list(self.branches)
        out["exclude_styles"] = list(self.exclude_styles)
        return out


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _set(cfg: TrainConfig, key: str, value: Any) -> None:
    target: Any = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        if part not in ("model", "signature") or not hasattr(target, part):
            raise PlanetlocError(f"unknown setting {key!r}")
        target = getattr(target, part)
    name = parts[-1]
    if name not in {f.name for f in fields(target)}:
        raise PlanetlocError(f"unknown setting {key!r}")
    annotation = _hints(type(target))[name]
    if annotation is ModelConfig or annotation is SignatureConfig:
        if not isinstance(value, dict):
            raise PlanetlocError(f"setting {key!r} must be a mapping")
        for sub, sub_value in value.items():
            _set(cfg, f"{key}.{sub}", sub_value)
        return
    if isinstance(target, SignatureConfig):
        # A frozen dataclass: replace it on the model config.
        cfg.model.signature = SignatureConfig(
            **{**asdict(target), name: coerce(value, annotation, key)}
        )
        return
    setattr(target, name, coerce(value, annotation, key))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in ("model", "signature"):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    method: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Defaults, then the method preset, then the YAML file, then overrides."""
    cfg = TrainConfig()
    file_values: dict[str, Any] = {}
    if path is not None:
        file_values = _flatten(read_mapping(path))
    chosen = method or file_values.get("method") or cfg.method
    if chosen not in METHODS:
        raise PlanetlocError(f"method must be one of {', '.join(METHODS)}, got {chosen!r}")
    cfg.method = chosen
    for key, value in {**METHODS[chosen], **file_values, **(overrides or {})}.items():
        if key == "method":
            continue
        _set(cfg, key, value)
    cfg.check()
    return cfg


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved in a checkpoint."""
    data = dict(data)
    model = ModelConfig.from_dict(data.pop("model"))
    cfg = TrainConfig(model=model)
    for key, value in data.items():
        _set(cfg, key, value)
    return cfg
