"""Text and image towers built on transformers backbones, plus a small CNN for tiles.

A text tower maps token ids to per-token features (for the physical projection) and one
pooled embedding; an image tower maps normalised pixels to one embedding. Both report their
output widths so the model can put projection heads on top.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from planetloc.errors import PlanetlocError

# OpenAI CLIP's pixel statistics, which open_clip ViTs (RemoteCLIP, GeoRSCLIP) also use.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TextOutput:
    tokens: torch.Tensor  # (B, L, D) per-token features
    mask: torch.Tensor  # (B, L) bool, True for real tokens
    pooled: torch.Tensor  # (B, P) sentence embedding


def load_tokenizer(source: str) -> object:
    """A tokenizer from a local folder or cached hub id, refused if its vocabulary is empty."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise PlanetlocError(f"cannot load the tokenizer of {source!r}: {err}") from None
    if len(tok) < 256:
        # Offline, a hub id can resolve to an empty tokenizer holding only special tokens.
        raise PlanetlocError(
            f"tokenizer of {source!r} has only {len(tok)} tokens: not a usable vocabulary"
        )
    return tok


def interpolate_positions(weight: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly stretch a (L, D) position-embedding table to (length, D).

    This is the "extended position embedding" of CrossText2Loc: a CLIP text tower trained on
    77 positions reads longer descriptions without truncation.
    """
    if weight.shape[0] == length:
        return weight.clone()
    stretched = F.interpolate(
        weight.t().unsqueeze(0), size=length, mode="linear", align_corners=True
    )
    return stretched.squeeze(0).t().contiguous()


def _load_pretrained(cls: type, source: str, **kwargs: object) -> nn.Module:
    try:
        return cls.from_pretrained(source, **kwargs)
    except OSError as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1: only local folders and cached ids load)" if offline else ""
        raise PlanetlocError(f"cannot load {cls.__name__} from {source!r}{hint}: {err}") from None


class HFTextTower(nn.Module):
    """Any transformers encoder (BERT, MiniLM, ...) with mean or CLS pooling."""

    def __init__(self, source: str, *, pooling: str = "mean", trainable_layers: int = 0) -> None:
        super().__init__()
        from transformers import AutoModel

        if pooling not in ("mean", "cls"):
            raise PlanetlocError(f"text pooling must be 'mean' or 'cls', got {pooling!r}")
        self.model = _load_pretrained(AutoModel, source)
        self.pooling = pooling
        self.width = int(self.model.config.hidden_size)
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 512))
        freeze_except_last(self.model, trainable_layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextOutput:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.bool()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return TextOutput(tokens=hidden, mask=mask, pooled=pooled)


class CLIPTextTower(nn.Module):
    """The text half of a CLIP model; pooled output is the projected end-of-text feature."""

    def __init__(self, clip: nn.Module, *, max_tokens: int, trainable_layers: int = -1) -> None:
        super().__init__()
        self.text_model = clip.text_model
        self.projection = clip.text_projection
        self.width = int(clip.config.text_config.hidden_size)
        self.pooled_width = int(clip.config.projection_dim)
        extend_clip_positions(self.text_model, max_tokens)
        self.max_positions = max_tokens
        freeze_except_last(self.text_model, trainable_layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextOutput:
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return TextOutput(
            tokens=out.last_hidden_state,
            mask=attention_mask.bool(),
            pooled=self.projection(out.pooler_output),
        )


class CLIPImageTower(nn.Module):
    def __init__(self, clip: nn.Module, *, trainable_layers: int = -1) -> None:
        super().__init__()
        self.vision_model = clip.vision_model
        self.projection = clip.visual_projection
        self.width = int(clip.config.projection_dim)
        self.image_size = int(clip.config.vision_config.image_size)
        freeze_except_last(self.vision_model, trainable_layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.projection(self.vision_model(pixel_values=pixels).pooler_output)


class SiglipTextTower(nn.Module):
    def __init__(self, siglip: nn.Module, *, trainable_layers: int = -1) -> None:
        super().__init__()
        self.text_model = siglip.text_model
        self.width = int(siglip.config.text_config.hidden_size)
        self.pooled_width = self.width
        self.max_positions = int(siglip.config.text_config.max_position_embeddings)
        freeze_except_last(self.text_model, trainable_layers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextOutput:
        # SigLIP was trained without a padding mask: it pads to a fixed length instead.
        out = self.text_model(input_ids=input_ids)
        return TextOutput(
            tokens=out.last_hidden_state, mask=attention_mask.bool(), pooled=out.pooler_output
        )


class SiglipImageTower(nn.Module):
    def __init__(self, siglip: nn.Module, *, trainable_layers: int = -1) -> None:
        super().__init__()
        self.vision_model = siglip.vision_model
        self.width = int(siglip.config.vision_config.hidden_size)
        self.image_size = int(siglip.config.vision_config.image_size)
        freeze_except_last(self.vision_model, trainable_layers)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixels).pooler_output


class TileCNN(nn.Module):
    """A small convolutional encoder for tiles, trained from scratch.

    GroupNorm rather than BatchNorm: its output for a sample does not depend on the rest of
    the batch, so a batch split over DDP ranks gives exactly the single-process result.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), image_size: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, widths[0], 5, stride=2, padding=2, bias=False),
            nn.GroupNorm(8, widths[0]),
            nn.GELU(),
        ]
        for c_in, c_out in itertools.pairwise(widths):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
                nn.GroupNorm(8, c_out),
                nn.GELU(),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                nn.GroupNorm(8, c_out),
                nn.GELU(),
            ]
        self.features = nn.Sequential(*layers)
        self.width = widths[-1] * 2
        self.image_size = image_size

    # Encoding on a CPU (no gradient) reads channels-last tensors, which oneDNN runs faster
    # there (benchmarks/tile_tower.py). Training keeps NCHW, so that its arithmetic stays
    # that of earlier versions and runs resumed from their checkpoints continue exactly.
    # False gives the NCHW arithmetic for encoding too, bit for bit. On a GPU the layout is
    # left as it comes: it was not measured there.
    cpu_channels_last: bool = True

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        cpu = pixels.device.type == "cpu"
        if self.cpu_channels_last and cpu and not torch.is_grad_enabled():
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        x = self.features(pixels)
        # Mean and max pooling: layout-wide statistics and the strongest local cue.
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


def extend_clip_positions(text_model: nn.Module, max_tokens: int) -> None:
    """Resize a CLIP text model's position table in place to ``max_tokens`` positions."""
    emb = text_model.embeddings
    old = emb.position_embedding.weight.data
    if old.shape[0] == max_tokens:
        return
    new = nn.Embedding(max_tokens, old.shape[1])
    new.weight.data.copy_(interpolate_positions(old, max_tokens))
    emb.position_embedding = new
    emb.register_buffer("position_ids", torch.arange(max_tokens).unsqueeze(0), persistent=False)
    text_model.config.max_position_embeddings = max_tokens


def freeze_except_last(model: nn.Module, trainable_layers: int) -> None:
    """Freeze a transformers encoder but its last ``trainable_layers`` layers (-1: train all)."""
    if trainable_layers < 0:
        return
    for p in model.parameters():
        p.requires_grad_(False)
    layers = _encoder_layers(model)
    if trainable_layers > 0:
        if layers is None:
            raise PlanetlocError(f"cannot find the layers of {type(model).__name__} to unfreeze")
        for layer in layers[-trainable_layers:]:
            for p in layer.parameters():
                p.requires_grad_(True)


def _encoder_layers(model: nn.Module) -> nn.ModuleList | None:
    for name in ("encoder.layer", "encoder.layers"):
        obj: object = model
        for part in name.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    return None


def is_frozen(module: nn.Module) -> bool:
    return not any(p.requires_grad for p in module.parameters())
