"""PLANET: a text tower and an image tower aligned by contrastive learning, with a physical
branch that ties what the text says to colour, structure and texture measured on the pixels.

At retrieval only the global embeddings are needed; the physical branch explains a match
(per-branch agreement) and can re-rank the top candidates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from planetloc.errors import PlanetlocError
from planetloc.model.physics import BRANCHES, PhysicalSemanticProjection, SignatureHeads
from planetloc.model.registry import MINILM, backbone_spec, resolve_source
from planetloc.model.signatures import SignatureConfig, physical_signatures
from planetloc.model.towers import (
    CLIPImageTower,
    CLIPTextTower,
    HFTextTower,
    SiglipImageTower,
    SiglipTextTower,
    TextOutput,
    TileCNN,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ModelConfig:
    """Architecture of a PLANET model (saved in every checkpoint)."""

    backbone: str = "minilm-cnn"
    text_source: str | None = None  # overrides the backbone's text source
    image_source: str | None = None
    openclip_config: str | None = None
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        sig = data.pop("signature", None)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise PlanetlocError(f"unknown model setting {sorted(unknown)[0]!r}")
        cfg = cls(**data)
        if sig is not None:
            cfg.signature = SignatureConfig(**sig)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


class Planet(nn.Module):
    """The PLANET model: towers, projection heads and the physical branch, from a config."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        spec = backbone_spec(cfg.backbone)
        tspec, ispec = spec["text"], spec["image"]
        shared = self._shared_model(tspec, ispec, cfg)
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
        self.tokenizer = self._tokenizer(tspec, cfg)

    # ----------------------------------------------------------------------------- building
    @staticmethod
    def _shared_model(tspec: dict, ispec: dict, cfg: ModelConfig) -> nn.Module | None:
        kind = tspec["kind"]
        if kind != ispec["kind"] or kind not in ("clip", "siglip", "openclip", "tiny-clip"):
            return None
        if kind == "tiny-clip":
            return _tiny_clip()
        if kind == "openclip":
            from planetloc.model.openclip import load_openclip

            config = cfg.openclip_config or tspec.get("openclip_config")
            if not config:
                raise PlanetlocError(
                    "backbone 'openclip' needs model.openclip_config (open_clip_config.json)"
                )
            return load_openclip(resolve_source(cfg.text_source or tspec["source"]), config)
        from transformers import CLIPModel, SiglipModel

        from planetloc.model.towers import _load_pretrained

        cls = CLIPModel if kind == "clip" else SiglipModel
        return _load_pretrained(cls, resolve_source(cfg.text_source or tspec["source"]))

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
            return CLIPImageTower(shared, trainable_layers=layers), CLIP_MEAN, CLIP_STD
        if kind == "siglip":
            return (
                SiglipImageTower(shared, trainable_layers=layers),
                (0.5, 0.5, 0.5),
                (0.5, 0.5, 0.5),
            )
        raise PlanetlocError(f"unknown image tower kind {kind!r}")

    @staticmethod
    def _tokenizer(tspec: dict, cfg: ModelConfig) -> Any:
        kind = tspec["kind"]
        if kind == "tiny-clip":
            return None  # tests feed token ids directly
        from transformers import AutoTokenizer

        # The tiny BERT shares MiniLM's WordPiece vocabulary, which ships offline.
        source = MINILM if kind == "tiny-bert" else (cfg.text_source or tspec["source"])
        if kind == "openclip":
            source = "openai/clip-vit-base-patch32"  # open_clip ViTs share OpenAI's BPE vocabulary
        try:
            tok = AutoTokenizer.from_pretrained(resolve_source(source))
        except OSError as err:
            raise PlanetlocError(f"cannot load the tokenizer of {source!r}: {err}") from None
        if len(tok) < 256:
            # Offline, a hub id can resolve to an empty tokenizer holding only special tokens.
            raise PlanetlocError(
                f"tokenizer of {source!r} has only {len(tok)} tokens: not a usable vocabulary"
            )
        return tok

    # ----------------------------------------------------------------------------- encoding
    @property
    def text_trunk_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.text_tower.parameters())

    def tokenize(self, texts: list[str]) -> tuple[dict[str, torch.Tensor], list[bool]]:
        """Token ids padded to the batch, cut at ``max_tokens``; also which texts were cut."""
        if self.tokenizer is None:
            raise PlanetlocError(f"backbone {self.cfg.backbone!r} has no tokenizer")
        limit = min(self.cfg.max_tokens, self.text_tower.max_positions)
        full = self.tokenizer(texts, truncation=False, add_special_tokens=True)["input_ids"]
        cut = [len(ids) > limit for ids in full]
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=limit, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, cut

    def text_trunk(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextOutput:
        return self.text_tower(input_ids, attention_mask)

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
