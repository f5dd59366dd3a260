"""Which model a job evaluates: a trained checkpoint, or an untrained (zero-shot) one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from planetloc.model.checkpoint import fingerprint_of, load_model, model_state, read_checkpoint
from planetloc.model.planet import ModelConfig, Planet


@dataclass
class ModelForEvaluation:
    """A model ready to evaluate, what it is, and the settings its run chose on val."""

    model: Planet
    fingerprint: str
    info: dict[str, Any]
    selection: dict[str, Any] = field(default_factory=dict)


def trained(checkpoint: str) -> ModelForEvaluation:
    """A trained run's model, with its recorded validation-split selection."""
    info = read_checkpoint(checkpoint)
    return ModelForEvaluation(
        model=load_model(info),
        fingerprint=info.fingerprint,
        info={
            "checkpoint": str(info.path),
            "method": info.train_config.get("method"),
            "backbone": info.model_config.get("backbone"),
            "query": info.model_config.get("query", "text"),
            "step": info.step,
        },
        selection=info.extra.get("selection") or {},
    )


def zero_shot(backbone: str, data: str, *, seed: int = 0) -> ModelForEvaluation:
    """An untrained model of ``backbone`` (pretrained trunks, random heads), its signature
    standardisation fitted on the training tiles as training would."""
    import torch

    from planetloc.data.stream import open_source
    from planetloc.train.config import load_config
    from planetloc.train.trainer import fit_signature_statistics

    torch.manual_seed(seed)
    cfg = load_config(overrides={"model.backbone": backbone, "data": str(data), "seed": seed})
    model = Planet(ModelConfig(backbone=backbone))
    fit_signature_statistics(model, open_source(data), cfg)
    model.eval()
    return ModelForEvaluation(
        model=model,
        fingerprint=fingerprint_of(model.cfg.to_dict(), model_state(model)),
        info={"checkpoint": None, "method": "zero-shot", "backbone": backbone, "query": "text"},
    )
