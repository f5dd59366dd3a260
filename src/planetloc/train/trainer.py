"""The training loop: single process, or torchrun DDP with features gathered across ranks.

planetloc train --data runs/demo/world --out runs/planet --method planet
torchrun --nproc_per_node=4 -m planetloc.cli train --data ... --out ...
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from planetloc.atomic import write_text
from planetloc.data.manifest import find_manifest, read_manifest
from planetloc.errors import PlanetlocError
from planetloc.model.planet import Planet
from planetloc.model.towers import TextOutput
from planetloc.train.checkpoint import load_weights, read_checkpoint, save_checkpoint, set_rng_state
from planetloc.train.config import TrainConfig
from planetloc.train.data import PairData, batch_indices, prepare, rank_slice
from planetloc.train.distributed import DistInfo, gather_with_grad, init_from_env
from planetloc.train.losses import LossParts, planet_loss

CHECKPOINT = "checkpoint.pt"


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PlanetlocError(f"device {name!r} requested but CUDA is not available")
    return name


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class TrainStep(nn.Module):
    """Everything with parameters in one forward, so DDP sees one module."""

    def __init__(self, model: Planet) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, text: TextOutput, tiles: torch.Tensor, signatures: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        emb = self.model.text_head(text)
        return (
            emb.global_,
            emb.phys,
            self.model.encode_image(tiles),
            self.model.encode_signatures(signatures),
        )


def augment_tiles(
    tiles: torch.Tensor, generator: torch.Generator, max_shift: int = 4
) -> torch.Tensor:
    """Shift each tile by up to ``max_shift`` pixels and vary its per-channel gain and offset.

    Only what a real acquisition varies: misregistration and radiometry. Rotations and flips
    are excluded because descriptions name compass directions and shadows point away from the
    sun, so a rotated tile would no longer match its text.
    """
    b, _, h, w = tiles.shape
    x = tiles.float()
    padded = torch.nn.functional.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    shifted = torch.stack(
        [padded[i, :, r : r + h, c : c + w] for i, (r, c) in enumerate(offsets.tolist())]
    )
    gain = 1 + (torch.rand(b, 3, 1, 1, generator=generator) - 0.5) * 0.16
    offset = (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 12
    return (shifted * gain + offset).clamp(0, 255).round().to(torch.uint8)


def compute_loss(
    step_module: nn.Module,
    model: Planet,
    cfg: TrainConfig,
    text: TextOutput,
    tiles: torch.Tensor,
    signatures: dict[str, torch.Tensor],
    info: DistInfo,
) -> LossParts:
    """The global-batch loss as seen by this rank (its own slice carries the gradient)."""
    t_global, t_phys, i_global, f_phys = step_module(text, tiles, signatures)
    gather = lambda x: gather_with_grad(x.float(), info)  # noqa: E731
    return planet_loss(
        gather(t_global),
        gather(i_global),
        model.logit_scale,
        {k: gather(v) for k, v in t_phys.items()},
        {k: gather(v) for k, v in f_phys.items()},
        dict(model.phys_logit_scale.items()),
        lambda_phy=cfg.lambda_phy,
        branches=tuple(cfg.branches),
    )


def text_batch(model: Planet, data: PairData, idx: torch.Tensor, device: str) -> TextOutput:
    if data.text is not None:
        return data.text.batch(idx, device)
    enc, _ = model.tokenize([data.samples[i].text for i in idx.tolist()])
    return model.text_trunk(enc["input_ids"].to(device), enc["attention_mask"].to(device))


def param_groups(model: Planet, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Pretrained towers learn slowly (backbone_lr); new heads and scratch towers at lr.

    Norms, biases and temperatures get no weight decay.
    """
    from planetloc.model.towers import TileCNN

    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        pretrained = name.startswith("text_tower.") or (
            name.startswith("image_tower.") and not isinstance(model.image_tower, TileCNN)
        )
        lr = cfg.backbone_lr if pretrained else cfg.lr
        decay = 0.0 if p.ndim < 2 or "logit_scale" in name else cfg.weight_decay
        groups.setdefault((lr, decay), []).append(p)
    return [
        {"params": ps, "lr": lr, "base_lr": lr, "weight_decay": wd}
        for (lr, wd), ps in groups.items()
    ]


def _config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    ignore = {
        "steps",
        "save_every",
        "eval_every",
        "log_every",
        "out",
        "data",
        "device",
        "rerank_alpha",
    }
    return sorted(
        k for k in set(saved) | set(current) if k not in ignore and saved.get(k) != current.get(k)
    )


def train(
    cfg: TrainConfig, *, resume: bool = False, progress: bool = True, stop_after: int | None = None
) -> dict[str, Any]:
    """Train ``cfg`` and return a summary. ``stop_after`` ends the run early (as a crash would)."""
    cfg.check()
    device = pick_device(cfg.device)
    info = init_from_env(device)
    if info.enabled and device.startswith("cuda"):
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    seed_everything(cfg.seed)
    manifest = read_manifest(find_manifest(cfg.data))
    model = Planet(cfg.model).to(device)
    data = prepare(
        manifest,
        manifest.by_split("train"),
        model,
        device=device,
        progress=progress and info.is_main,
    )
    model.signature_heads.set_statistics({k: v.to(device) for k, v in data.signatures.items()})
    optimizer = torch.optim.AdamW(param_groups(model, cfg))
    start = 0
    if resume:
        if not ckpt_path.exists():
            raise PlanetlocError(f"{ckpt_path}: nothing to resume from")
        payload = read_checkpoint(ckpt_path)
        diff = _config_differences(payload["train_config"], cfg.to_dict())
        if diff:
            raise PlanetlocError(
                f"{ckpt_path}: was trained with other settings ({', '.join(diff)})"
            )
        load_weights(model, payload, ckpt_path)
        optimizer.load_state_dict(payload["optimizer"])
        set_rng_state(payload["rng"])
        start = int(payload["step"])
    elif ckpt_path.exists():
        raise PlanetlocError(
            f"{ckpt_path} exists: pass --resume to continue it, or use a new --out"
        )
    step_module: nn.Module = TrainStep(model)
    if info.enabled:
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[info.local_rank] if device.startswith("cuda") else None
        )
    amp = cfg.amp != "off" and device.startswith("cuda")
    n = len(data)
    metrics_path = out / "metrics.jsonl"
    history = _kept_history(metrics_path, start) if info.is_main else []
    truncated = float(np.mean(data.text.truncated)) if data.text is not None else None
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc=f"training {cfg.method}",
        unit="step",
        disable=not (progress and info.is_main),
    )
    last_time, last_step = time.perf_counter(), start
    step = start
    model.train()
    for step in range(start, cfg.steps):
        if stop_after is not None and step >= stop_after:
            break
        factor = lr_factor(step, cfg.warmup_steps, cfg.steps)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        idx = rank_slice(
            batch_indices(n, cfg.batch_size, step, cfg.seed), info.rank, info.world_size
        )
        text = text_batch(model, data, idx, device)
        tiles = data.tiles[idx]
        if cfg.augment:
            # Seeded by (seed, step, rank): resumed runs draw the same shifts.
            gen = torch.Generator().manual_seed(cfg.seed * 7_919 + step * 31 + info.rank)
            tiles = augment_tiles(tiles, gen)
        tiles = tiles.to(device)
        sigs = {k: v[idx].to(device) for k, v in data.signatures.items()}
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            parts = compute_loss(step_module, model, cfg, text, tiles, sigs, info)
        parts.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], cfg.grad_clip
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.update(1)
        done = step + 1
        if info.is_main and (done % cfg.log_every == 0 or done == cfg.steps):
            now = time.perf_counter()
            row = {
                "step": done,
                "lr": cfg.lr * factor,
                "grad_norm": float(grad_norm),
                **parts.as_floats(),
            }
            row["samples_per_s"] = (done - last_step) * cfg.batch_size / max(now - last_time, 1e-9)
            last_time, last_step = now, done
            history.append(row)
            _append(metrics_path, row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
        if info.is_main and (done % cfg.save_every == 0 or done == cfg.steps):
            save_checkpoint(
                ckpt_path,
                model,
                train_config=cfg.to_dict(),
                step=done,
                optimizer=optimizer,
                extra={"truncated_fraction": truncated},
            )
        if info.is_main and cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps):
            val = _validate(model, manifest, device)
            if val is not None:
                row = {"step": done, **{f"val_{k}": v for k, v in val.items()}}
                history.append(row)
                _append(metrics_path, row)
            model.train()
    bar.close()
    summary = {
        "method": cfg.method,
        "steps": step + 1 if stop_after is None else min(stop_after, cfg.steps),
        "train_samples": n,
        "truncated_fraction": truncated,
        "checkpoint": str(ckpt_path),
        "history": history,
    }
    if info.is_main:
        write_text(out / "train_summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _validate(model: Planet, manifest, device: str) -> dict[str, float] | None:
    from planetloc.eval.evaluate import evaluate_split

    val = manifest.by_split("val")
    if len(val) < 2:
        return None
    return evaluate_split(model, manifest, val, val, device=device, progress=False)


def _append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _kept_history(path: Path, start: int) -> list[dict[str, Any]]:
    """Rows logged up to ``start``; later ones (from a run that died after its checkpoint) go."""
    if not path.exists():
        return []
    rows = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    kept = [r for r in rows if r["step"] <= start]
    write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept
