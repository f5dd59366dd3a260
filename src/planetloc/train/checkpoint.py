"""Checkpoints: atomic, self-describing, and refused with a clear error when they do not fit.

A checkpoint holds the model and training configs, the trainable weights and buffers (a
frozen pretrained trunk is rebuilt from its source rather than copied), the optimiser,
the step and every random state, so that ``--resume`` continues exactly.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from planetloc.atomic import atomic_path
from planetloc.errors import PlanetlocError
from planetloc.model.planet import ModelConfig, Planet

FORMAT = "planetloc-checkpoint-v1"


def _saved_state(model: nn.Module) -> dict[str, torch.Tensor]:
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    return {
        k: v.detach().cpu() for k, v in model.state_dict().items() if k in trainable or k in buffers
    }


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Planet,
    *,
    train_config: dict[str, Any],
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    payload = {
        "format": FORMAT,
        "model_config": model.cfg.to_dict(),
        "train_config": train_config,
        "step": step,
        "model": _saved_state(model),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": rng_state(),
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise PlanetlocError(f"{p}: checkpoint not found")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as err:
        raise PlanetlocError(
            f"{p}: corrupt or unreadable checkpoint ({type(err).__name__})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PlanetlocError(f"{p}: not a planetloc checkpoint (expected format {FORMAT})")
    return payload


def load_model(path: str | os.PathLike[str], payload: dict[str, Any] | None = None) -> Planet:
    """Rebuild the model a checkpoint was trained with and load its weights."""
    payload = payload or read_checkpoint(path)
    model = Planet(ModelConfig.from_dict(payload["model_config"]))
    load_weights(model, payload, path)
    return model


def load_weights(model: Planet, payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Load saved weights into ``model``, refusing any key or shape that does not match."""
    own = model.state_dict()
    saved = payload["model"]
    for key, value in saved.items():
        if key not in own:
            raise PlanetlocError(
                f"{path}: checkpoint holds {key!r}, which this model does not have"
            )
        if own[key].shape != value.shape:
            raise PlanetlocError(
                f"{path}: {key!r} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the model (another architecture?)"
            )
    expected = set(_saved_state(model))
    missing = sorted(expected - set(saved))
    if missing:
        raise PlanetlocError(f"{path}: checkpoint lacks {missing[0]!r} (another architecture?)")
    model.load_state_dict(saved, strict=False)
