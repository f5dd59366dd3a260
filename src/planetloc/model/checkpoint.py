"""Checkpoints in a format that cannot run code: safetensors tensors plus JSON metadata.

One file, ``checkpoint.safetensors``, holds everything a run needs:

* tensors ``model.<name>``: the trainable weights and all buffers (a frozen pretrained trunk is
  rebuilt from its source rather than copied);
* tensors ``optim.<param>.<name>`` and ``rng.*``: optimiser moments and random-generator states,
  for an exact ``--resume``;
* metadata (strings): the format, the model and training configs, the step, extras, the
  optimiser's parameter groups, the numpy/Python generator states and the model fingerprint.

Loading never unpickles anything: a checkpoint or dataset folder from someone else can at worst
be refused. Pickle checkpoints (``.pt``) are refused with an explanation.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from planetloc.atomic import atomic_path
from planetloc.errors import PlanetlocError

FORMAT = "planetloc-checkpoint-v2"
CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint is, read from its header without loading any tensor."""

    path: Path
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    step: int
    extra: dict[str, Any]
    fingerprint: str


def checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """The checkpoint file of ``path``: the file itself, or the one inside a run folder."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if p.suffix in (".pt", ".pth", ".pkl", ".bin") and p.is_file():
        raise PlanetlocError(
            f"{p}: pickle checkpoints are not loaded, because unpickling a file can run code; "
            f"planetloc checkpoints are {CHECKPOINT_NAME} files (retrain to get one)"
        )
    if not p.is_file():
        raise PlanetlocError(f"{p}: checkpoint not found")
    return p


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint keeps: trainable parameters and every buffer, and frozen
    weights too when they cannot be rebuilt from a pretrained source (random or tiny trunks)."""
    if not getattr(model, "frozen_from_source", True):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    return {
        k: v.detach().cpu() for k, v in model.state_dict().items() if k in trainable or k in buffers
    }


def fingerprint_of(model_config: dict[str, Any], state: dict[str, torch.Tensor]) -> str:
    """A digest of the architecture and weights: which model produced some embeddings."""
    h = hashlib.sha256(json.dumps(model_config, sort_keys=True).encode())
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def capture_rng() -> dict[str, Any]:
    """This process's random-generator states (torch, CUDA, numpy, Python)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": _jsonable(random.getstate()),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def restore_rng(state: dict[str, Any]) -> None:
    """Put every random generator back where :func:`capture_rng` saw it."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(_tupled(state["python"]))


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_config: dict[str, Any],
    train_config: dict[str, Any],
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    extra: dict[str, Any] | None = None,
    rng: list[dict[str, Any]] | None = None,
) -> str:
    """Atomically write a checkpoint; returns the model fingerprint it records.

    ``rng`` holds the generator states of every process (one per DDP rank, from
    :func:`capture_rng`); by default this process's.
    """
    from safetensors.torch import save_file

    state = model_state(model)
    fingerprint = fingerprint_of(model_config, state)
    tensors = {f"model.{k}": v.contiguous().clone() for k, v in state.items()}
    metadata = {
        "format": FORMAT,
        "model_config": json.dumps(model_config, sort_keys=True),
        "train_config": json.dumps(train_config, sort_keys=True),
        "step": str(int(step)),
        "extra": json.dumps(extra or {}, sort_keys=True),
        "fingerprint": fingerprint,
    }
    if optimizer is not None:
        opt = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, entry in opt["state"].items():
            for name, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous().clone()
                else:
                    scalars.setdefault(str(pid), {})[name] = value
        groups = opt["param_groups"]
        metadata["optimizer"] = json.dumps({"param_groups": groups, "scalars": scalars})
        states = rng or [capture_rng()]
        for rank, state in enumerate(states):
            tensors[f"rng.{rank}.torch"] = state["torch"].contiguous().clone()
            for i, cuda in enumerate(state["cuda"]):
                tensors[f"rng.{rank}.cuda.{i}"] = cuda.contiguous().clone()
        metadata["rng"] = json.dumps(
            [{"numpy": s["numpy"], "python": s["python"], "cuda": len(s["cuda"])} for s in states]
        )
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return fingerprint


def _open(path: Path) -> Any:
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as err:  # the Rust reader raises its own error types for damaged files
        raise PlanetlocError(
            f"{path}: not a readable safetensors checkpoint ({type(err).__name__}: {err})"
        ) from None


def read_checkpoint(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Read a checkpoint's header (configs, step, fingerprint) without loading tensors."""
    p = checkpoint_path(path)
    with _open(p) as fh:
        meta = fh.metadata() or {}
    if meta.get("format") != FORMAT:
        raise PlanetlocError(f"{p}: not a planetloc checkpoint (expected format {FORMAT})")
    try:
        info = CheckpointInfo(
            path=p,
            model_config=json.loads(meta["model_config"]),
            train_config=json.loads(meta["train_config"]),
            step=int(meta["step"]),
            extra=json.loads(meta["extra"]),
            fingerprint=meta["fingerprint"],
        )
    except (KeyError, ValueError) as err:
        raise PlanetlocError(f"{p}: damaged checkpoint header ({err})") from None
    for name in ("model_config", "train_config", "extra"):
        if not isinstance(getattr(info, name), dict):
            raise PlanetlocError(f"{p}: damaged checkpoint header ({name} is not an object)")
    return info


def read_tensors(info: CheckpointInfo, prefix: str) -> dict[str, torch.Tensor]:
    """Every tensor whose name starts with ``prefix``, the prefix removed."""
    with _open(info.path) as fh:
        return {k[len(prefix) :]: fh.get_tensor(k) for k in fh.keys() if k.startswith(prefix)}  # noqa: SIM118


def load_weights(model: nn.Module, info: CheckpointInfo) -> None:
    """Load a checkpoint's weights into ``model``, refusing any key or shape that does not fit."""
    saved = read_tensors(info, "model.")
    own = model.state_dict()
    for key, value in saved.items():
        if key not in own:
            raise PlanetlocError(
                f"{info.path}: checkpoint holds {key!r}, which this model does not have"
            )
        if own[key].shape != value.shape:
            raise PlanetlocError(
                f"{info.path}: {key!r} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the model (another architecture?)"
            )
    missing = sorted(set(model_state(model)) - set(saved))
    if missing:
        raise PlanetlocError(
            f"{info.path}: checkpoint lacks {missing[0]!r} (another architecture?)"
        )
    model.load_state_dict(saved, strict=False)


def load_optimizer(
    optimizer: torch.optim.Optimizer, info: CheckpointInfo, *, rank: int = 0
) -> None:
    """Restore optimiser moments and this rank's random generators saved with ``info``."""
    with _open(info.path) as fh:
        meta = fh.metadata() or {}
    if "optimizer" not in meta or "rng" not in meta:
        raise PlanetlocError(f"{info.path}: holds no training state to resume from")
    saved = json.loads(meta["optimizer"])
    tensors = read_tensors(info, "optim.")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in saved["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    except (ValueError, KeyError) as err:
        raise PlanetlocError(f"{info.path}: optimiser state does not fit ({err})") from None
    states = json.loads(meta["rng"])
    if rank >= len(states):
        raise PlanetlocError(f"{info.path}: holds generator states of {len(states)} processes")
    tensors = read_tensors(info, f"rng.{rank}.")
    state = states[rank]
    restore_rng(
        {
            "torch": tensors["torch"],
            "cuda": [tensors[f"cuda.{i}"] for i in range(state["cuda"])],
            "numpy": state["numpy"],
            "python": state["python"],
        }
    )


def load_model(path: str | os.PathLike[str] | CheckpointInfo) -> Any:
    """Rebuild the model a checkpoint was trained with, load its weights, set eval mode."""
    from planetloc.model.planet import ModelConfig, Planet

    info = path if isinstance(path, CheckpointInfo) else read_checkpoint(path)
    model = Planet(ModelConfig.from_dict(info.model_config))
    load_weights(model, info)
    return model.eval()
