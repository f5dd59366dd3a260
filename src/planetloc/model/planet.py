"""PLANET: a text tower and an image tower aligned by contrastive learning, with a physical
branch that ties what the text says to colour, structure and texture measured on the pixels.

At retrieval only the global embeddings are needed; the physical branch explains a match
(per-branch agreement) and can re-rank the top candidates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from planetloc.errors import PlanetlocError
from planetloc.model.physics import BRANCHES, PhysicalSemanticProjection, SignatureHeads
from planetloc.model.registry import MINILM, backbone_spec, resolve_source
from planetloc.model.signatures import SignatureConfig, physical_signatures
from planetloc.model.towers import (
    CLIP_MEAN,
    CLIP_STD,
    CLIPImageTower,
    CLIPTextTower,
    HFTextTower,
    SiglipImageTower,
    SiglipTextTower,
    TextOutput,
    TileCNN,
    load_tokenizer,
)

QUERY_KINDS = ("text", "image", "joint")
JOINT_SCORES = ("projection", "mean", "sum")


@dataclass
class ModelConfig:
    """Architecture of a PLANET model (saved in every checkpoint)."""

    backbone: str = "minilm-cnn"
    text_source: str | None = None  # overrides the backbone's text source
    image_source: str | None = None
    openclip_config: str | None = None
    tokenizer: str | None = None  # tokenizer source; default: the text source
    init: str = "pretrained"  # "random": the backbone's architecture with fresh weights
    embed_dim: int = 256
    head_dim: int = 256
    heads: int = 4
    phys_dim: int = 128
    max_tokens: int = 248
    text_trainable_layers: int = 0  # 0: frozen trunk (features cacheable); -1: all layers
    image_trainable_layers: int = -1
    image_size: int = 128
    token_dropout: float = 0.1  # share of text tokens hidden from the heads while training
    signature: SignatureConfig = field(default_factory=SignatureConfig)
    # Queries: "text" (descriptions), "image" (street views) or "joint" (both at once).
    query: str = "text"
    street_backbone: str = "cnn"  # "cnn" (from scratch) or a backbone whose image tower reads views
    street_size: tuple[int, int] = (64, 256)  # (H, W) of the street image the tower reads
    street_align: str = "heading"  # "heading": as taken; "north": panorama rolled north-up
    joint_score: str = "projection"  # joint queries: "projection" (MAPS), "mean" or "sum"

    def check(self) -> None:
        """Refuse settings no model can be built with, naming the setting."""
        for name in ("embed_dim", "head_dim", "heads", "phys_dim", "max_tokens", "image_size"):
            if getattr(self, name) < 1:
                raise PlanetlocError(f"setting 'model.{name}' must be at least 1")
        if self.head_dim % self.heads:
            raise PlanetlocError(
                f"model.head_dim {self.head_dim} must be divisible by model.heads {self.heads}"
            )
        if not 0.0 <= self.token_dropout < 1.0:
            raise PlanetlocError(f"model.token_dropout must be in [0, 1), got {self.token_dropout}")
        if self.query not in QUERY_KINDS:
            raise PlanetlocError(f"model.query must be one of {', '.join(QUERY_KINDS)}")
        if self.joint_score not in JOINT_SCORES:
            raise PlanetlocError(f"model.joint_score must be one of {', '.join(JOINT_SCORES)}")
        if self.street_align not in ("heading", "north"):
            raise PlanetlocError("model.street_align must be 'heading' or 'north'")
        if min(self.street_size) < 16:
            raise PlanetlocError(f"model.street_size {self.street_size} is too small")

    @property
    def uses_text(self) -> bool:
        return self.query in ("text", "joint")

    @property
    def uses_street(self) -> bool:
        return self.query in ("image", "joint")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a saved config, type-checking every value."""
        import typing

        from planetloc.yaml_config import coerce

        data = dict(data)
        sig = data.pop("signature", None)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise PlanetlocError(f"unknown model setting {sorted(unknown)[0]!r}")
        hints = typing.get_type_hints(cls)
        cfg = cls(**{k: coerce(v, hints[k], f"model.{k}") for k, v in data.items()})
        if sig is not None:
            cfg.signature = SignatureConfig(**sig)
        cfg.check()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["street_size"] = list(self.street_size)
        return out


@dataclass
class TextEmbeddings:
    global_: torch.Tensor  # (B, E) unit vectors
    phys: dict[str, torch.Tensor]  # each (B, phys_dim) unit vectors


def _tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
    )
    return BertModel(cfg)


def _tiny_clip() -> nn.Module:
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "vocab_size": 49408,
            "max_position_embeddings": 77,
        },
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        projection_dim=32,
    )
    return CLIPModel(cfg)


def image_statistics(
    source: str, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A checkpoint folder's own pixel mean/std (``preprocessor_config.json``), if it has them."""
    import json

    path = Path(source) / "preprocessor_config.json"
    if not path.is_file():
        return mean, std
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        return tuple(float(v) for v in cfg["image_mean"]), tuple(float(v) for v in cfg["image_std"])
    except (KeyError, TypeError, ValueError, json.JSONDecodeError):
        raise PlanetlocError(f"{path}: unreadable image_mean/image_std") from None


def random_clip(spec: dict, name: str, tokenizer: Any) -> nn.Module:
    """A CLIP model of the backbone's published architecture with fresh weights.

    The text embedding table is sized to ``tokenizer``, whose end-of-text (or [SEP]) token is
    the one CLIP pools, so any offline vocabulary can drive a real-size architecture.
    """
    from transformers import CLIPConfig, CLIPModel

    arch = spec.get("architecture")
    if arch is None:
        raise PlanetlocError(
            f"backbone {name!r} has no architecture to build with model.init=random"
        )
    text = dict(arch["text_config"])
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    text.update(
        vocab_size=len(tokenizer),
        eos_token_id=int(eos),
        bos_token_id=int(tokenizer.bos_token_id or tokenizer.cls_token_id or 0),
        pad_token_id=int(tokenizer.pad_token_id or 0),
    )
    cfg = CLIPConfig(
        text_config=text,
        vision_config=dict(arch["vision_config"]),
        projection_dim=int(arch["projection_dim"]),
    )
    return CLIPModel(cfg)


def joint_scores(
    text: torch.Tensor, view: torch.Tensor, tiles: torch.Tensor, how: str
) -> torch.Tensor:
    """(Q, G) scores of joint (text, street view) queries against tile embeddings.

    ``projection`` (MAPS): the length of each tile embedding's projection onto the plane the
    query's two embeddings span; ``mean``: the cosine with their normalised mean; ``sum``: the
    sum of the two cosines. All take unit vectors.
    """
    if how == "projection":
        e1 = text
        e2 = view - (view * text).sum(-1, keepdim=True) * text
        norm = e2.norm(dim=-1, keepdim=True)
        # A view parallel to its text spans no plane: the projection is onto the text alone.
        e2 = torch.where(norm > 1e-6, e2 / norm.clamp_min(1e-6), torch.zeros_like(e2))
        return torch.sqrt((e1 @ tiles.t()) ** 2 + (e2 @ tiles.t()) ** 2 + 1e-12)
    if how == "mean":
        return F.normalize(text + view, dim=-1) @ tiles.t()
    if how == "sum":
        return text @ tiles.t() + view @ tiles.t()
    raise PlanetlocError(f"unknown joint score {how!r}; use one of {', '.join(JOINT_SCORES)}")


class Planet(nn.Module):
    """The PLANET model: towers, projection heads and the physical branch, from a config."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        spec = backbone_spec(cfg.backbone)
        tspec, ispec = spec["text"], spec["image"]
        if cfg.init not in ("pretrained", "random"):
            raise PlanetlocError(f"model.init must be 'pretrained' or 'random', got {cfg.init!r}")
        self.tokenizer = self._tokenizer(tspec, cfg)
        shared = self._shared_model(spec, cfg, self.tokenizer)
        self.text_tower = self._text_tower(tspec, cfg, shared)
        self.image_tower, mean, std = self._image_tower(ispec, cfg, shared)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1))
        t_width = self.text_tower.width
        pooled_width = getattr(self.text_tower, "pooled_width", t_width)
        # A trainable head over the (possibly frozen) token features, shared by the global
        # embedding and the physical projection so that L_phy shapes what retrieval reads.
        self.token_adapter = nn.Sequential(
            nn.LayerNorm(t_width),
            nn.Linear(t_width, cfg.head_dim),
            nn.GELU(),
            nn.Linear(cfg.head_dim, cfg.head_dim),
        )
        self.pool_query = nn.Parameter(torch.randn(1, 1, cfg.head_dim) * 0.02)
        self.pool_attn = nn.MultiheadAttention(cfg.head_dim, cfg.heads, batch_first=True)
        self.text_proj = nn.Linear(cfg.head_dim + pooled_width, cfg.embed_dim)
        self.image_proj = nn.Sequential(
            nn.Linear(self.image_tower.width, cfg.embed_dim * 2),
            nn.GELU(),
            nn.Linear(cfg.embed_dim * 2, cfg.embed_dim),
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.projection = PhysicalSemanticProjection(cfg.head_dim, cfg.phys_dim, cfg.heads)
        self.signature_heads = SignatureHeads(cfg.signature.dims, cfg.phys_dim)
        self.phys_logit_scale = nn.ParameterDict(
            {k: nn.Parameter(torch.tensor(math.log(1 / 0.07))) for k in BRANCHES}
        )
        if cfg.uses_street:
            self.street_tower, smean, sstd = self._street_tower(cfg)
            self.register_buffer("street_mean", torch.tensor(smean).view(1, 3, 1, 1))
            self.register_buffer("street_std", torch.tensor(sstd).view(1, 3, 1, 1))
            self.street_proj = nn.Sequential(
                nn.Linear(self.street_tower.width, cfg.embed_dim * 2),
                nn.GELU(),
                nn.Linear(cfg.embed_dim * 2, cfg.embed_dim),
            )
            # Temperatures of the view-satellite and joint-query contrastive losses.
            self.view_logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
            self.joint_logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    # ----------------------------------------------------------------------------- building
    @staticmethod
    def _shared_model(spec: dict, cfg: ModelConfig, tokenizer: Any) -> nn.Module | None:
        tspec, ispec = spec["text"], spec["image"]
        kind = tspec["kind"]
        if kind != ispec["kind"] or kind not in ("clip", "siglip", "openclip", "tiny-clip"):
            return None
        if kind == "tiny-clip":
            return _tiny_clip()
        if cfg.init == "random":
            return random_clip(spec, cfg.backbone, tokenizer)
        source = resolve_source(cfg.text_source or tspec["source"])
        if kind == "openclip" and not Path(source).is_dir():
            from planetloc.model.openclip import load_openclip

            config = cfg.openclip_config or tspec.get("openclip_config")
            if not config:
                raise PlanetlocError(
                    "backbone 'openclip' needs model.openclip_config (open_clip_config.json) "
                    "beside a .pt checkpoint, or a folder written by `planetloc convert-openclip`"
                )
            return load_openclip(source, config)
        from transformers import CLIPModel, SiglipModel

        from planetloc.model.towers import _load_pretrained

        # A converted open_clip folder is a transformers CLIP folder.
        cls = SiglipModel if kind == "siglip" else CLIPModel
        return _load_pretrained(cls, source)

    @staticmethod
    def _text_tower(tspec: dict, cfg: ModelConfig, shared: nn.Module | None) -> nn.Module:
        kind = tspec["kind"]
        layers = cfg.text_trainable_layers
        if kind in ("clip", "openclip", "tiny-clip"):
            return CLIPTextTower(shared, max_tokens=cfg.max_tokens, trainable_layers=layers)
        if kind == "siglip":
            return SiglipTextTower(shared, trainable_layers=layers)
        if kind == "hf":
            return HFTextTower(
                resolve_source(cfg.text_source or tspec["source"]),
                pooling=tspec.get("pooling", "mean"),
                trainable_layers=layers,
            )
        if kind == "tiny-bert":
            tower = HFTextTower.__new__(HFTextTower)
            nn.Module.__init__(tower)
            tower.model, tower.pooling = _tiny_bert(), "mean"
            tower.width, tower.max_positions = 64, 512
            from planetloc.model.towers import freeze_except_last

            freeze_except_last(tower.model, layers)
            return tower
        raise PlanetlocError(f"unknown text tower kind {kind!r}")

    @staticmethod
    def _image_tower(
        ispec: dict, cfg: ModelConfig, shared: nn.Module | None
    ) -> tuple[nn.Module, tuple, tuple]:
        kind = ispec["kind"]
        layers = cfg.image_trainable_layers
        if kind == "cnn":
            return (
                TileCNN(tuple(ispec["widths"]), cfg.image_size),
                (0.45, 0.45, 0.42),
                (0.22, 0.22, 0.22),
            )
        if kind in ("clip", "openclip", "tiny-clip"):
            mean, std = CLIP_MEAN, CLIP_STD
            source = cfg.image_source or cfg.text_source or ispec.get("source")
            if kind != "tiny-clip" and source and cfg.init == "pretrained":
                mean, std = image_statistics(resolve_source(source), mean, std)
            return CLIPImageTower(shared, trainable_layers=layers), mean, std
        if kind == "siglip":
            return (
                SiglipImageTower(shared, trainable_layers=layers),
                (0.5, 0.5, 0.5),
                (0.5, 0.5, 0.5),
            )
        raise PlanetlocError(f"unknown image tower kind {kind!r}")

    @staticmethod
    def _street_tower(cfg: ModelConfig) -> tuple[nn.Module, tuple, tuple]:
        """The street-view tower: a CNN from scratch, or a registry backbone's image tower."""
        if cfg.street_backbone == "cnn":
            tower = TileCNN((32, 64, 128, 256), max(cfg.street_size))
            tower.image_size = None  # reads the view at its own (H, W), not a square
            return tower, (0.45, 0.45, 0.45), (0.25, 0.25, 0.25)
        spec = backbone_spec(cfg.street_backbone)
        if spec["image"]["kind"] == "cnn":
            tower = TileCNN(tuple(spec["image"]["widths"]), max(cfg.street_size))
            tower.image_size = None
            return tower, (0.45, 0.45, 0.45), (0.25, 0.25, 0.25)
        view_cfg = ModelConfig(backbone=cfg.street_backbone, init=cfg.init)
        shared = Planet._shared_model(spec, view_cfg, None)
        return Planet._image_tower(spec["image"], view_cfg, shared)

    @staticmethod
    def _tokenizer(tspec: dict, cfg: ModelConfig) -> Any:
        kind = tspec["kind"]
        if kind == "tiny-clip":
            return None  # tests feed token ids directly
        # The tiny BERT shares MiniLM's WordPiece vocabulary, which ships offline.
        source = cfg.tokenizer or (MINILM if kind == "tiny-bert" else None)
        source = source or cfg.text_source or tspec["source"]
        if kind == "openclip" and not cfg.tokenizer and not Path(resolve_source(source)).is_dir():
            raise PlanetlocError(
                "an open_clip .pt checkpoint carries no tokenizer: set model.tokenizer to a "
                "CLIP tokenizer folder, or convert it first with `planetloc convert-openclip "
                "--tokenizer FOLDER`, which writes a self-contained folder"
            )
        return load_tokenizer(resolve_source(source))

    def train(self, mode: bool = True) -> Planet:
        """Train mode for what learns; a frozen tower stays in eval mode (no dropout), so
        its features are the same in every step and match a cache of them."""
        super().train(mode)
        for name in ("text_tower", "image_tower", "street_tower"):
            tower = getattr(self, name, None)
            if tower is not None and not any(p.requires_grad for p in tower.parameters()):
                tower.eval()
        return self

    # ----------------------------------------------------------------------------- encoding
    @property
    def frozen_from_source(self) -> bool:
        """Whether frozen weights come back identical from their pretrained source (so a
        checkpoint need not copy them); random and test-size towers do not."""
        kinds = {backbone_spec(self.cfg.backbone)[t]["kind"] for t in ("text", "image")}
        return self.cfg.init == "pretrained" and not kinds & {"tiny-bert", "tiny-clip"}

    @property
    def text_trunk_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.text_tower.parameters())

    def tokenize(self, texts: list[str]) -> tuple[dict[str, torch.Tensor], list[bool]]:
        """Token ids padded to the batch, cut at ``max_tokens``; also which texts were cut.

        One tokenizer pass: texts are split into tokens once, cut to the limit less the special
        tokens, and wrapped with the special tokens the backbone expects (so a cut CLIP text still
        ends with its end-of-text token, which CLIP pools).
        """
        if self.tokenizer is None:
            raise PlanetlocError(f"backbone {self.cfg.backbone!r} has no tokenizer")
        tok = self.tokenizer
        limit = min(self.cfg.max_tokens, self.text_tower.max_positions)
        full = tok(
            list(texts),
            add_special_tokens=True,
            truncation=False,
            return_special_tokens_mask=True,
        )
        ids, cut = [], []
        for row, special in zip(full["input_ids"], full["special_tokens_mask"], strict=True):
            if len(row) <= limit:
                ids.append(row)
                cut.append(False)
                continue
            # Keep the leading and trailing special tokens, cut the words in between.
            lead = next(i for i, s in enumerate(special) if not s)
            tail = len(row) - next(i for i, s in enumerate(reversed(special)) if not s)
            words = limit - lead - (len(row) - tail)
            ids.append(row[: lead + words] + row[tail:])
            cut.append(True)
        padded = tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        return {
            "input_ids": padded["input_ids"],
            "attention_mask": padded["attention_mask"],
        }, cut

    def text_trunk(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextOutput:
        out = self.text_tower(input_ids, attention_mask)
        if self.text_trunk_frozen:
            # A frozen trunk's token features are float16 numbers, as its on-disk cache keeps
            # them: cached and freshly computed features give the same embeddings.
            out = TextOutput(tokens=out.tokens.to(torch.float16), mask=out.mask, pooled=out.pooled)
        return out

    def text_head(self, trunk: TextOutput) -> TextEmbeddings:
        tokens = self.token_adapter(trunk.tokens.float())
        mask = trunk.mask
        if self.training and self.cfg.token_dropout > 0:
            # Hiding tokens mimics a describer who leaves cues out; the first token stays so
            # no text is ever empty.
            keep = torch.rand(mask.shape, device=mask.device) >= self.cfg.token_dropout
            keep[:, 0] = True
            mask = mask & keep
        q = self.pool_query.expand(tokens.shape[0], -1, -1)
        pooled, _ = self.pool_attn(q, tokens, tokens, key_padding_mask=~mask, need_weights=False)
        global_ = self.text_proj(torch.cat([pooled[:, 0], trunk.pooled.float()], dim=-1))
        return TextEmbeddings(
            global_=F.normalize(global_, dim=-1), phys=self.projection(tokens, mask)
        )

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextEmbeddings:
        return self.text_head(self.text_trunk(input_ids, attention_mask))

    def preprocess(self, tiles: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) tiles -> normalised float pixels at the tower's input size."""
        x = tiles.float() / 255.0 if tiles.dtype == torch.uint8 else tiles.float()
        size = getattr(self.image_tower, "image_size", self.cfg.image_size)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        return (x - self.pixel_mean) / self.pixel_std

    def encode_image(self, tiles: torch.Tensor) -> torch.Tensor:
        return F.normalize(
            self.image_proj(self.image_tower(self.preprocess(tiles)).float()), dim=-1
        )

    def encode_street(self, views: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) street views -> unit embeddings in the tiles' space."""
        if not self.cfg.uses_street:
            raise PlanetlocError("this model was not trained on street images (model.query=text)")
        x = views.float() / 255.0 if views.dtype == torch.uint8 else views.float()
        size = getattr(self.street_tower, "image_size", None)
        target = (size, size) if size else tuple(self.cfg.street_size)
        if tuple(x.shape[-2:]) != target:
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.street_mean) / self.street_std
        return F.normalize(self.street_proj(self.street_tower(x).float()), dim=-1)

    def encode_signatures(self, signatures: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.signature_heads(signatures)

    def tile_signatures(self, tiles: torch.Tensor) -> dict[str, torch.Tensor]:
        return physical_signatures(tiles, self.cfg.signature)

    @torch.no_grad()
    def explain(self, texts: list[str], tiles: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-branch physical agreement of every text with every tile, (T, N) cosines each.

        ``color``, ``struc`` and ``tex`` say how well what a description implies about colour,
        layout orientation and texture matches what the tile's pixels show; ``global`` is the
        retrieval score.
        """
        was_training = self.training
        self.eval()
        enc, _ = self.tokenize(texts)
        text = self.encode_text(enc["input_ids"], enc["attention_mask"])
        tile_phys = self.encode_signatures(self.tile_signatures(tiles))
        out = {k: text.phys[k] @ tile_phys[k].t() for k in BRANCHES}
        out["global"] = text.global_ @ self.encode_image(tiles).t()
        self.train(was_training)
        return out
