"""Convert open_clip checkpoints (RemoteCLIP, GeoRSCLIP, SkyCLIP weights) into transformers CLIP.

open_clip stores the OpenAI-CLIP architecture with fused attention projections and its own
key names; transformers' CLIPModel holds the same weights split and renamed. The converter
reads the open_clip model config (``open_clip_config.json``'s ``model_cfg``) and the state
dict, and returns a CLIPModel whose text and image features equal open_clip's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from planetloc.errors import PlanetlocError
from planetloc.model.towers import CLIP_MEAN, CLIP_STD

_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}


def clip_config_from_openclip(model_cfg: dict[str, Any]) -> Any:
    """A transformers CLIPConfig with the shapes of an open_clip ``model_cfg``."""
    from transformers import CLIPConfig, CLIPTextConfig, CLIPVisionConfig
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # its token-id notes are not a user's concern here
    vision, text = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    if not isinstance(vision, dict) or not isinstance(text, dict):
        raise PlanetlocError("open_clip config: vision_cfg and text_cfg must be objects")
    if isinstance(vision.get("layers"), list | tuple):
        raise PlanetlocError(
            "open_clip ResNet image towers are not supported; use a ViT checkpoint"
        )
    sizes = {
        "embed_dim": model_cfg.get("embed_dim"),
        "vision_cfg.width": vision.get("width"),
        "vision_cfg.layers": vision.get("layers"),
        "vision_cfg.image_size": vision.get("image_size"),
        "vision_cfg.patch_size": vision.get("patch_size"),
        "vision_cfg.head_width": vision.get("head_width", 64),
        "text_cfg.width": text.get("width"),
        "text_cfg.layers": text.get("layers"),
        "text_cfg.heads": text.get("heads", 8),
        "text_cfg.context_length": text.get("context_length", 77),
        "text_cfg.vocab_size": text.get("vocab_size", 49408),
    }
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlanetlocError(
                f"open_clip config: {name} must be a positive integer, got {value!r}"
            )
    if (
        vision["image_size"] % vision["patch_size"]
        or vision["width"] % sizes["vision_cfg.head_width"]
    ):
        raise PlanetlocError(
            "open_clip config: image_size must be a multiple of patch_size and width of head_width"
        )
    act = "quick_gelu" if model_cfg.get("quick_gelu") else "gelu"
    v_width = int(vision["width"])
    t_width = int(text["width"])
    text_cfg = CLIPTextConfig(
        vocab_size=int(text.get("vocab_size", 49408)),
        hidden_size=t_width,
        intermediate_size=int(t_width * text.get("mlp_ratio", 4.0)),
        num_hidden_layers=int(text["layers"]),
        num_attention_heads=int(text.get("heads", max(1, t_width // 64))),
        max_position_embeddings=int(text.get("context_length", 77)),
        projection_dim=int(model_cfg["embed_dim"]),
        hidden_act=act,
        eos_token_id=49407,
        bos_token_id=49406,
        pad_token_id=0,
    )
    vision_cfg = CLIPVisionConfig(
        hidden_size=v_width,
        intermediate_size=int(v_width * vision.get("mlp_ratio", 4.0)),
        num_hidden_layers=int(vision["layers"]),
        num_attention_heads=int(v_width // int(vision.get("head_width", 64))),
        image_size=int(vision["image_size"]),
        patch_size=int(vision["patch_size"]),
        projection_dim=int(model_cfg["embed_dim"]),
        hidden_act=act,
    )
    return CLIPConfig(
        text_config=text_cfg.to_dict(),
        vision_config=vision_cfg.to_dict(),
        projection_dim=int(model_cfg["embed_dim"]),
    )


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def _blocks(
    src: dict[str, torch.Tensor], prefix: str, dst_prefix: str, out: dict[str, torch.Tensor]
) -> None:
    index = 0
    while f"{prefix}{index}.ln_1.weight" in src:
        p, d = f"{prefix}{index}.", f"{dst_prefix}{index}."
        for name in ("weight", "bias"):
            q, k, v = src[f"{p}attn.in_proj_{name}"].chunk(3, dim=0)
            out[f"{d}self_attn.q_proj.{name}"] = q
            out[f"{d}self_attn.k_proj.{name}"] = k
            out[f"{d}self_attn.v_proj.{name}"] = v
            for old, new in _BLOCK.items():
                out[f"{d}{new}.{name}"] = src[f"{p}{old}.{name}"]
        index += 1


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip state-dict keys and layouts -> transformers CLIPModel keys and layouts."""
    src = _strip(state)
    required = ("token_embedding.weight", "positional_embedding", "text_projection", "visual.proj")
    missing = [k for k in required if k not in src]
    if missing:
        raise PlanetlocError(f"not an open_clip ViT checkpoint: missing {missing[0]!r}")
    out: dict[str, torch.Tensor] = {
        "text_model.embeddings.token_embedding.weight": src["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": src["positional_embedding"],
        "text_model.final_layer_norm.weight": src["ln_final.weight"],
        "text_model.final_layer_norm.bias": src["ln_final.bias"],
        # open_clip multiplies by (width, embed) matrices; nn.Linear stores (out, in).
        "text_projection.weight": src["text_projection"].t().contiguous(),
        "vision_model.embeddings.class_embedding": src["visual.class_embedding"],
        "vision_model.embeddings.position_embedding.weight": src["visual.positional_embedding"],
        "vision_model.embeddings.patch_embedding.weight": src["visual.conv1.weight"],
        "vision_model.pre_layrnorm.weight": src["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": src["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": src["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": src["visual.ln_post.bias"],
        "visual_projection.weight": src["visual.proj"].t().contiguous(),
        "logit_scale": src["logit_scale"].reshape(()),
    }
    _blocks(src, "transformer.resblocks.", "text_model.encoder.layers.", out)
    _blocks(src, "visual.transformer.resblocks.", "vision_model.encoder.layers.", out)
    return out


def load_openclip(
    checkpoint: str | os.PathLike[str], config: str | os.PathLike[str] | dict[str, Any]
) -> Any:
    """A transformers CLIPModel holding the weights of an open_clip checkpoint.

    ``config`` is an ``open_clip_config.json`` path (its ``model_cfg``) or the model_cfg dict.
    """
    from transformers import CLIPModel

    if not isinstance(config, dict):
        config = read_openclip_config(config)
    ckpt = Path(checkpoint)
    if not ckpt.is_file():
        raise PlanetlocError(f"{ckpt}: checkpoint not found")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PlanetlocError(
            f"{ckpt}: cannot read checkpoint ({type(err).__name__}: {err})"
        ) from None
    try:
        clip_config = clip_config_from_openclip(config)
    except (KeyError, TypeError, ValueError) as err:
        raise PlanetlocError(f"open_clip config lacks or mangles a field ({err})") from None
    model = CLIPModel(clip_config)
    converted = convert_state_dict(state)
    try:
        missing, unexpected = model.load_state_dict(converted, strict=False)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), "")
        raise PlanetlocError(f"{ckpt}: checkpoint does not fit the config ({first})") from None
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise PlanetlocError(
            f"{ckpt}: checkpoint does not fit the config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.eval()


def read_openclip_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``model_cfg`` of an ``open_clip_config.json`` (or a bare model config JSON)."""
    p = Path(path)
    if not p.is_file():
        raise PlanetlocError(f"{p}: open_clip config not found")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PlanetlocError(f"{p}: not a JSON open_clip config ({err})") from None
    config = raw.get("model_cfg", raw) if isinstance(raw, dict) else None
    if not isinstance(config, dict) or "vision_cfg" not in config or "text_cfg" not in config:
        raise PlanetlocError(f"{p}: an open_clip config needs model_cfg.vision_cfg and text_cfg")
    return config


def convert_to_folder(
    checkpoint: str | os.PathLike[str],
    config: str | os.PathLike[str],
    out: str | os.PathLike[str],
    tokenizer: str | os.PathLike[str],
) -> Path:
    """Write a folder that loads with no network: weights (safetensors), model config,
    tokenizer, and image preprocessing settings (size, mean, std).

    open_clip checkpoints carry no tokenizer, so one is copied in from ``tokenizer`` (a saved
    CLIP BPE tokenizer); its vocabulary must fit the model's token table.
    """
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor

    from planetloc.model.towers import load_tokenizer

    folder = Path(out)
    if folder.exists() and any(folder.iterdir()):
        raise PlanetlocError(f"{folder} is not empty; nothing was overwritten (choose a new --out)")
    model_cfg = read_openclip_config(config)
    tok = load_tokenizer(str(tokenizer))
    vocab = int(model_cfg["text_cfg"].get("vocab_size", 49408))
    if len(tok) > vocab:
        raise PlanetlocError(
            f"tokenizer {tokenizer} has {len(tok)} tokens, more than the model's {vocab}"
        )
    model = load_openclip(checkpoint, model_cfg)
    size = int(model_cfg["vision_cfg"]["image_size"])
    preprocess = model_cfg.get("preprocess_cfg") or {}
    processor = CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=list(preprocess.get("mean", CLIP_MEAN)),
        image_std=list(preprocess.get("std", CLIP_STD)),
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
