"""The training loop: single process, or torchrun DDP with features gathered across ranks.

planetloc train --data runs/demo/world --out runs/planet --method planet
torchrun --nproc_per_node=4 -m planetloc.cli train --data ... --out ...

Samples stream from shards or a manifest through DataLoader workers (see
:mod:`planetloc.data.stream`); a frozen text trunk's features come from an on-disk cache or
are computed per batch. Memory therefore does not grow with the dataset. A non-finite loss or
gradient stops the run at once, before it can be saved.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from planetloc.atomic import write_text
from planetloc.data.caches import cache_root, dataset_manifest
from planetloc.data.informal import informal
from planetloc.data.stream import (
    Source,
    StreamSpec,
    check_styles,
    open_source,
    phrasings,
    train_loader,
)
from planetloc.devices import pick_device
from planetloc.errors import PlanetlocError
from planetloc.eval.evaluate import evaluate_split
from planetloc.eval.protocols import split_set
from planetloc.eval.selection import select_rerank_alpha
from planetloc.model.checkpoint import (
    CHECKPOINT_NAME,
    capture_rng,
    load_optimizer,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from planetloc.model.planet import Planet, joint_scores
from planetloc.model.signature_cache import Signatures, build_cache
from planetloc.model.towers import TextOutput, TileCNN
from planetloc.model.trunk_cache import TrunkCache
from planetloc.train.config import TrainConfig
from planetloc.train.distributed import (
    DistInfo,
    barrier,
    gather_objects,
    gather_with_grad,
    init_from_env,
)
from planetloc.train.losses import LossParts, info_nce_on_scores, planet_loss, symmetric_info_nce

STATISTICS_SAMPLES = 2048  # training tiles the signature standardisation is fitted on


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
        self,
        text: TextOutput | None,
        tiles: torch.Tensor,
        signatures: dict[str, torch.Tensor],
        street: torch.Tensor | None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"tiles": self.model.encode_image(tiles)}
        if text is not None:
            emb = self.model.text_head(text)
            out["text"], out["text_phys"] = emb.global_, emb.phys
            out["tile_phys"] = self.model.encode_signatures(signatures)
        if street is not None:
            out["view"] = self.model.encode_street(street)
        return out


def augment_tiles(
    tiles: torch.Tensor, generator: torch.Generator, max_shift: int = 4
) -> torch.Tensor:
    """Shift each tile by up to ``max_shift`` pixels and vary its per-channel gain and offset.

    Only what a real acquisition varies: misregistration and radiometry. Rotations and flips
    are excluded because descriptions name compass directions and shadows point away from the
    sun, so a rotated tile would no longer match its text.
    """
    b, _, h, w = tiles.shape
    # The draws come from the CPU generator (seeded per step, so a resumed run replays them);
    # the shift and recolouring run where the tiles are, since on a GPU this is a large share
    # of a step.
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    gain = 1 + (torch.rand(b, 3, 1, 1, generator=generator) - 0.5) * 0.16
    offset = (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 12
    device = tiles.device
    # A shift with replicated borders is a row and column selection with clamped indices,
    # so no padded copy of the batch is made.
    rows = (offsets[:, :1] - max_shift + torch.arange(h)).clamp(0, h - 1).to(device)
    cols = (offsets[:, 1:] - max_shift + torch.arange(w)).clamp(0, w - 1).to(device)
    shifted = torch.empty(tiles.shape, dtype=torch.float32, device=device)
    for i in range(b):
        shifted[i] = tiles[i].index_select(1, rows[i]).index_select(2, cols[i])
    shifted.mul_(gain.to(device)).add_(offset.to(device)).clamp_(0, 255).round_()
    return shifted.to(torch.uint8)


def lambda_at(cfg: TrainConfig, step: int) -> float:
    """The L_phy weight at ``step``: ``lambda_phy``, ramped up over ``lambda_warmup_steps``."""
    if cfg.lambda_warmup_steps <= 0:
        return cfg.lambda_phy
    return cfg.lambda_phy * min(1.0, (step + 1) / cfg.lambda_warmup_steps)


def compute_loss(
    step_module: nn.Module,
    model: Planet,
    cfg: TrainConfig,
    text: TextOutput | None,
    tiles: torch.Tensor,
    signatures: dict[str, torch.Tensor],
    street: torch.Tensor | None,
    info: DistInfo,
    step: int,
) -> LossParts:
    """The global-batch loss as seen by this rank (its own slice carries the gradient)."""
    out = step_module(text, tiles, signatures, street)
    gather = lambda x: gather_with_grad(x.float(), info)  # noqa: E731
    tile_emb = gather(out["tiles"])
    extra: dict[str, torch.Tensor] = {}
    if "text" in out:
        parts = planet_loss(
            gather(out["text"]),
            tile_emb,
            model.logit_scale,
            {k: gather(v) for k, v in out["text_phys"].items()},
            {k: gather(v) for k, v in out["tile_phys"].items()},
            dict(model.phys_logit_scale.items()),
            lambda_phy=lambda_at(cfg, step),
            branches=tuple(cfg.branches),
        )
    if "view" in out:
        view = gather(out["view"])
        extra["view"] = symmetric_info_nce(view, tile_emb, model.view_logit_scale)
        if "text" not in out:
            return LossParts(total=extra["view"], itc=extra["view"], phys={}, extra=extra)
        text_emb = gather(out["text"])
        extra["joint"] = info_nce_on_scores(
            joint_scores(text_emb, view, tile_emb, model.cfg.joint_score),
            model.joint_logit_scale,
        )
        parts = LossParts(
            total=parts.total + cfg.view_weight * extra["view"] + cfg.joint_weight * extra["joint"],
            itc=parts.itc,
            phys=parts.phys,
            extra=extra,
        )
    return parts


def param_groups(model: Planet, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Pretrained towers learn slowly (backbone_lr); new heads and scratch towers at lr.

    Norms, biases and temperatures get no weight decay.
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    scratch = (TileCNN,)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        tower = name.split(".", 1)[0]
        pretrained = (
            tower in ("text_tower", "image_tower", "street_tower")
            and model.cfg.init == "pretrained"
            and not isinstance(getattr(model, tower), scratch)
        )
        lr = cfg.backbone_lr if pretrained else cfg.lr
        decay = 0.0 if p.ndim < 2 or "logit_scale" in name else cfg.weight_decay
        groups.setdefault((lr, decay), []).append(p)
    return [
        {"params": ps, "lr": lr, "base_lr": lr, "weight_decay": wd}
        for (lr, wd), ps in groups.items()
    ]


# Settings that may change between a run and its resumption (they do not change the result).
RESUMABLE = {"steps", "save_every", "eval_every", "log_every", "out", "data", "device"}
# Settings added after runs were first saved, with the value those runs trained with.
LATER_SETTINGS: dict[str, Any] = {"exclude_styles": [], "informal_prob": 0.0}


def _config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    current = json.loads(json.dumps(current))  # tuples become lists, as they were saved
    return sorted(
        k
        for k in set(saved) | set(current)
        if k not in RESUMABLE and saved.get(k, LATER_SETTINGS.get(k)) != current.get(k)
    )


def _start_method() -> str:
    """Forked DataLoader workers cannot share a CUDA context: spawn them once it exists."""
    return "spawn" if torch.cuda.is_initialized() else "fork"


def _signatures(cfg: TrainConfig, source: Source, info: DistInfo) -> Signatures:
    """The signature function the workers call, with the dataset's cache when enabled."""
    root = cache_root(cfg.data, cfg.signature_cache)
    if root is None:
        return Signatures(cfg.model.signature)
    folder = None
    if info.is_main:
        folder = build_cache(
            root, source, "train", cfg.model.image_size, cfg.model.signature, workers=cfg.workers
        )
    folder = gather_objects(folder, info)[0]
    return Signatures(cfg.model.signature, folder)


def _stream_spec(cfg: TrainConfig, info: DistInfo, signatures: Signatures | None) -> StreamSpec:
    model = cfg.model
    return StreamSpec(
        seed=cfg.seed,
        batch_size=cfg.batch_size // info.world_size,
        rank=info.rank,
        world_size=info.world_size,
        workers=cfg.workers,
        shuffle_buffer=cfg.shuffle_buffer,
        image_size=model.image_size,
        street_size=tuple(model.street_size) if model.uses_street else None,
        street_align=model.street_align,
        alt_text_prob=cfg.alt_text_prob if model.uses_text else 0.0,
        exclude_styles=tuple(cfg.exclude_styles) if model.uses_text else (),
        informal_prob=cfg.informal_prob if model.uses_text else 0.0,
        neighbours=cfg.neighbours,
        on_bad_sample=cfg.on_bad_sample,
        signatures=signatures,
        start_method=_start_method(),
    )


@torch.no_grad()
def fit_signature_statistics(model: Planet, source: Source, cfg: TrainConfig) -> int:
    """Standardise the physical signatures with the first training tiles of the stream."""
    spec = StreamSpec(
        seed=cfg.seed,
        batch_size=256,
        workers=cfg.workers,
        shuffle_buffer=min(cfg.shuffle_buffer, STATISTICS_SAMPLES),
        image_size=cfg.model.image_size,
        on_bad_sample=cfg.on_bad_sample,
        signatures=Signatures(cfg.model.signature),
        start_method=_start_method(),
    )
    parts: list[dict[str, torch.Tensor]] = []
    seen, keys = 0, set()
    for batch in train_loader(source, spec):
        fresh = [i for i, k in enumerate(batch["keys"]) if k not in keys]
        if not fresh:
            break  # a small dataset came round again
        keys.update(batch["keys"][i] for i in fresh)
        parts.append({k: v[fresh] for k, v in batch["signatures"].items()})
        seen += len(fresh)
        if seen >= STATISTICS_SAMPLES or len(fresh) < len(batch["keys"]):
            break
    sigs = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    model.signature_heads.set_statistics(
        {k: v.to(model.logit_scale.device) for k, v in sigs.items()}
    )
    return seen


def _training_texts(data: Path, cfg: TrainConfig) -> Iterator[str]:
    """Every text the run can read: training texts (their other phrasings and informal
    rewrites too when the run reads them) and the validation texts."""
    from planetloc.data.manifest import iter_rows

    for _, record, _ in iter_rows(data):
        if not record or record.get("split") not in ("train", "val"):
            continue
        if record.get("split") == "val":
            if record.get("text"):
                yield record["text"]
            continue
        own, others = phrasings(record, tuple(cfg.exclude_styles))
        readable = [own] if own else []
        if cfg.alt_text_prob > 0 or own is None:
            readable += others
        yield from readable
        if cfg.informal_prob > 0:
            yield from (informal(t) for t in readable)


def _text_cache(
    cfg: TrainConfig, model: Planet, device: str, info: DistInfo, amp: bool, progress: bool
) -> TrunkCache | None:
    if not model.cfg.uses_text or not model.text_trunk_frozen:
        return None
    manifest = dataset_manifest(cfg.data)
    root = cache_root(cfg.data, cfg.text_cache)
    if manifest is None or root is None:
        return None  # no cache, or shards without a manifest: the trunk runs per batch
    cache = None
    if info.is_main:
        cache = TrunkCache.build(
            root,
            model,
            _training_texts(manifest, cfg),
            device=device,
            progress=progress,
            amp=amp,
        )
    barrier(info)
    if cache is None:
        cache = TrunkCache.build(
            root, model, _training_texts(manifest, cfg), device=device, amp=amp
        )
    return cache


def _text_batch(
    model: Planet, cache: TrunkCache | None, texts: list[str], device: str
) -> tuple[TextOutput, list[bool]]:
    if cache is not None:
        return cache.batch(texts, device), []
    enc, cut = model.tokenize(texts)
    ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    if model.text_trunk_frozen:
        with torch.no_grad():
            return model.text_trunk(ids, mask), cut
    return model.text_trunk(ids, mask), cut


def _diverged(step: int, what: str, ckpt: Path, last_saved: int) -> PlanetlocError:
    where = (
        f"the last good checkpoint is {ckpt} (step {last_saved})"
        if last_saved
        else "no checkpoint was saved yet"
    )
    return PlanetlocError(
        f"training diverged at step {step}: the {what} is not finite; {where}. "
        "Lower lr or raise warmup_steps, then train into a new --out (or --resume from it)"
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
    if cfg.batch_size % info.world_size:
        raise PlanetlocError(
            f"batch size {cfg.batch_size} is not divisible by {info.world_size} processes"
        )
    source = open_source(cfg.data)
    if cfg.model.uses_text:
        check_styles(source, tuple(cfg.exclude_styles))
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise PlanetlocError(f"{out}: --out must be a folder, and this is a file")
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT_NAME
    if not resume and ckpt_path.exists():
        raise PlanetlocError(
            f"{ckpt_path} exists: pass --resume to continue it, or use a new --out"
        )
    seed_everything(cfg.seed)
    model = Planet(cfg.model).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg))
    start = 0
    readers = {"world_size": info.world_size, "workers": cfg.workers}
    if resume:
        if not ckpt_path.exists():
            raise PlanetlocError(f"{ckpt_path}: nothing to resume from")
        saved = read_checkpoint(ckpt_path)
        diff = _config_differences(saved.train_config, cfg.to_dict())
        if diff:
            raise PlanetlocError(
                f"{ckpt_path}: was trained with other settings ({', '.join(diff)})"
            )
        if saved.extra.get("readers", readers) != readers:
            raise PlanetlocError(
                f"{ckpt_path}: was trained with {saved.extra['readers']}; resume with the same "
                "number of processes and workers so the data stream continues exactly"
            )
        load_weights(model, saved)
        load_optimizer(optimizer, saved, rank=info.rank)
        start = saved.step
    else:
        fit_signature_statistics(model, source, cfg)
    # bf16 autocast: on CUDA by default, anywhere when asked (CPUs with AMX or AVX512-BF16
    # run it natively, about twice as fast as float32).
    amp = cfg.amp == "bf16" or (cfg.amp == "auto" and device.startswith("cuda"))
    cache = _text_cache(cfg, model, device, info, amp, progress and info.is_main)
    step_module: nn.Module = TrainStep(model)
    if info.enabled:
        step_module = nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[info.local_rank] if device.startswith("cuda") else None,
            find_unused_parameters=cfg.model.query != "text",
        )
    metrics_path = out / "metrics.jsonl"
    history = _kept_history(metrics_path, start) if info.is_main else []
    # Selection needs val too: with eval_every 0 it still happens (once, at the end).
    wants_val = cfg.eval_every or (cfg.select_alpha and model.cfg.uses_text)
    val = _validation_set(cfg) if info.is_main and wants_val else None
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        desc=f"training {cfg.method}",
        unit="step",
        disable=not (progress and info.is_main),
    )
    sigs = _signatures(cfg, source, info) if model.cfg.uses_text else None
    loader = iter(train_loader(source, _stream_spec(cfg, info, sigs), start_step=start))
    last_time, last_step, last_saved = time.perf_counter(), start, start
    cut_texts = seen_texts = skipped = 0
    data_seconds = 0.0
    step = start
    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    model.train()
    for step in range(start, end):
        factor = lr_factor(step, cfg.warmup_steps, cfg.steps)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        fetch = time.perf_counter()
        batch = next(loader)
        data_seconds += time.perf_counter() - fetch
        skipped += len(batch["bad"])
        text = None
        if model.cfg.uses_text:
            text, cut = _text_batch(model, cache, batch["texts"], device)
            cut_texts, seen_texts = cut_texts + sum(cut), seen_texts + len(batch["texts"])
        tiles = batch["tiles"]
        if cfg.augment:
            # Seeded by (seed, step, rank): resumed runs draw the same shifts.
            gen = torch.Generator().manual_seed(cfg.seed * 7_919 + step * 31 + info.rank)
            tiles = augment_tiles(tiles.to(device), gen)
        sigs = {k: v.to(device) for k, v in batch.get("signatures", {}).items()}
        street = batch["street"].to(device) if "street" in batch else None
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
            parts = compute_loss(
                step_module, model, cfg, text, tiles.to(device), sigs, street, info, step
            )
        if not torch.isfinite(parts.total.detach()):
            raise _diverged(step + 1, "loss", ckpt_path, last_saved)
        parts.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], cfg.grad_clip or float("inf")
        )
        if not torch.isfinite(grad_norm):
            raise _diverged(step + 1, "gradient norm", ckpt_path, last_saved)
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
                "samples_per_s": (done - last_step) * cfg.batch_size / max(now - last_time, 1e-9),
                "data_wait_s": round(data_seconds, 3),
            }
            if skipped:
                row["skipped_samples"] = skipped
            last_time, last_step, data_seconds = now, done, 0.0
            history.append(row)
            _append(metrics_path, row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
        if info.is_main and val is not None and cfg.eval_every and done % cfg.eval_every == 0:
            row = {
                "step": done,
                **{f"val_{k}": v for k, v in _validate(model, val, device, cache).items()},
            }
            history.append(row)
            _append(metrics_path, row)
            model.train()
        final = done == cfg.steps
        if done % cfg.save_every == 0 or final:
            # Every rank's generators (token dropout draws differ between ranks).
            rng = gather_objects(capture_rng(), info)
        if info.is_main and (done % cfg.save_every == 0 or final):
            extra = {"readers": readers, "skipped_samples": skipped}
            if final and cfg.select_alpha and val is not None and model.cfg.uses_text:
                extra["selection"] = _select(model, val, device, cache)
            save_checkpoint(
                ckpt_path,
                model,
                model_config=model.cfg.to_dict(),
                train_config=cfg.to_dict(),
                step=done,
                optimizer=optimizer,
                extra=extra,
                rng=rng,
            )
            last_saved = done
    bar.close()
    truncated = (
        cache.truncated_fraction()
        if cache is not None
        else (cut_texts / seen_texts if seen_texts else None)
    )
    summary = {
        "method": cfg.method,
        "backbone": cfg.model.backbone,
        "query": cfg.model.query,
        "steps": end,
        "parameters": sum(p.numel() for p in model.parameters()),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "data": source.description,
        "truncated_fraction": truncated,
        "skipped_samples": skipped,
        "checkpoint": str(ckpt_path),
        "history": history,
    }
    if info.is_main:
        write_text(out / "train_summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def _validation_set(cfg: TrainConfig) -> Any:
    manifest = dataset_manifest(cfg.data)
    return None if manifest is None else split_set(manifest, "val")


def _validate(model: Planet, val: Any, device: str, cache: TrunkCache | None) -> dict[str, float]:
    return evaluate_split(model, val, device=device, trunk_cache=cache)


def _select(model: Planet, val: Any, device: str, cache: TrunkCache | None) -> dict[str, Any]:
    return select_rerank_alpha(model, val, device=device, trunk_cache=cache)


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
