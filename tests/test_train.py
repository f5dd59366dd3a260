"""Training: exact resume, DDP equivalence, checkpoint errors, and learning on SynthCORE."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_MODEL
from planetloc.data.manifest import Manifest
from planetloc.errors import PlanetlocError
from planetloc.eval.evaluate import evaluate_model
from planetloc.train.checkpoint import load_model, read_checkpoint
from planetloc.train.config import load_config
from planetloc.train.distributed import DistInfo
from planetloc.train.trainer import TrainStep, compute_loss, train

TESTS = Path(__file__).parent


def _tiny_config(world: Manifest, out: Path, **extra: object):
    overrides = {
        "data": str(world.path),
        "out": str(out),
        "batch_size": 16,
        "steps": 6,
        "log_every": 1,
        "save_every": 3,
        "eval_every": 0,
        "warmup_steps": 2,
        **TINY_MODEL,
        **extra,
    }
    return load_config(method="planet", overrides=overrides)


def _losses(run: Path) -> list[dict]:
    return [
        r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r
    ]


def test_resume_continues_exactly(small_world: Manifest, tmp_path: Path) -> None:
    full = tmp_path / "full"
    train(_tiny_config(small_world, full), progress=False)
    part = tmp_path / "part"
    train(_tiny_config(small_world, part), progress=False, stop_after=4)  # dies after step 4
    assert read_checkpoint(part / "checkpoint.pt")["step"] == 3  # last checkpoint before death
    with pytest.raises(PlanetlocError, match="pass --resume"):
        train(_tiny_config(small_world, part), progress=False)
    train(_tiny_config(small_world, part), progress=False, resume=True)
    a, b = _losses(full), _losses(part)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b, strict=True):
        assert ra["loss"] == rb["loss"], (ra, rb)
    wa = read_checkpoint(full / "checkpoint.pt")["model"]
    wb = read_checkpoint(part / "checkpoint.pt")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_with_other_settings_and_bad_checkpoints_are_refused(
    small_world: Manifest, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(_tiny_config(small_world, run, steps=3), progress=False)
    with pytest.raises(PlanetlocError, match=r"other settings \(lambda_phy\)"):
        train(_tiny_config(small_world, run, steps=6, lambda_phy=0.1), progress=False, resume=True)
    payload = read_checkpoint(run / "checkpoint.pt")
    payload["model_config"]["embed_dim"] = 48
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(PlanetlocError, match=r"in the checkpoint but .* in the model"):
        load_model(tmp_path / "mismatch.pt")
    data = (run / "checkpoint.pt").read_bytes()
    (tmp_path / "corrupt.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(PlanetlocError, match="corrupt or unreadable checkpoint"):
        load_model(tmp_path / "corrupt.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(PlanetlocError, match="not a planetloc checkpoint"):
        load_model(tmp_path / "foreign.pt")


def test_two_process_ddp_equals_one_process_on_the_global_batch(tmp_path: Path) -> None:
    sys.path.insert(0, str(TESTS))
    from ddp_batch import build

    model, cfg, text, tiles, sigs = build()
    parts = compute_loss(TrainStep(model), model, cfg, text, tiles, sigs, DistInfo())
    parts.total.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    out = tmp_path / "ddp.pt"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(TESTS / "ddp_worker.py"),
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = torch.load(out, weights_only=False)
    assert ddp["loss"].item() == pytest.approx(parts.total.item(), rel=1e-6)
    assert set(ddp["grads"]) == set(reference)
    for name, grad in reference.items():
        assert torch.allclose(ddp["grads"][name], grad, rtol=1e-4, atol=1e-6), name
    # Without the cross-rank gather (CrossText2Loc's bug) each rank would see 4 negatives, not 8:
    half = compute_loss(
        TrainStep(model),
        model,
        cfg,
        type(text)(text.tokens[:4], text.mask[:4], text.pooled[:4]),
        tiles[:4],
        {k: v[:4] for k, v in sigs.items()},
        DistInfo(),
    )
    assert abs(half.total.item() - parts.total.item()) > 1e-3


def test_short_real_training_beats_chance_and_the_untrained_model(
    small_world: Manifest, tmp_path: Path
) -> None:
    """The embedded default (real MiniLM + scratch CNN), 80 steps of batch 32, seed 0."""
    cfg = load_config(
        method="planet",
        overrides={
            "data": str(small_world.path),
            "out": str(tmp_path),
            "steps": 80,
            "batch_size": 32,
            "eval_every": 0,
            "seed": 0,
        },
    )
    untrained = evaluate_model(load_model_untrained(cfg), small_world, progress=False)["sets"][
        "world"
    ]["full"]
    summary = train(cfg, progress=False)
    losses = [r["loss"] for r in summary["history"] if "loss" in r]
    assert losses[-1] < 0.6 * losses[0]
    world = evaluate_model(load_model(tmp_path / "checkpoint.pt"), small_world, progress=False)[
        "sets"
    ]["world"]
    full = world["full"]
    chance_r10 = 100 * 10 / full["gallery"]
    # Stated margin: R@10 at least 3x chance and 15 points above the untrained model.
    assert full["R@10"] >= 3 * chance_r10, full
    assert full["R@10"] >= untrained["R@10"] + 15, (full, untrained)
    assert world["m100"]["R@1"] >= full["R@1"]  # the geographic prior never hurts


def load_model_untrained(cfg):
    from planetloc.data.images import load_tiles
    from planetloc.data.manifest import read_manifest
    from planetloc.model.planet import Planet
    from planetloc.train.data import signatures_of

    torch.manual_seed(cfg.seed)
    model = Planet(cfg.model)
    manifest = read_manifest(cfg.data)
    tiles = load_tiles(
        manifest, manifest.by_split("train"), size=cfg.model.image_size, progress=False
    )
    model.signature_heads.set_statistics(signatures_of(model, tiles))
    return model


def test_clip_preset_truncates_and_says_so(small_world: Manifest, tmp_path: Path) -> None:
    cfg = load_config(
        method="clip",
        overrides={
            "data": str(small_world.path),
            "out": str(tmp_path),
            "steps": 1,
            "batch_size": 16,
            "eval_every": 0,
            **TINY_MODEL,
        },
    )
    assert cfg.model.max_tokens == 77 and cfg.lambda_phy == 0
    summary = train(cfg, progress=False)
    assert summary["truncated_fraction"] > 0.5  # SynthCORE descriptions run past 77 tokens
    long = train(
        load_config(
            method="crosstext2loc",
            overrides={
                "data": str(small_world.path),
                "out": str(tmp_path / "x"),
                "steps": 1,
                "batch_size": 16,
                "eval_every": 0,
                **TINY_MODEL,
            },
        ),
        progress=False,
    )
    assert long["truncated_fraction"] == 0.0


def test_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PlanetlocError, match=r"unknown setting 'model\.colour'"):
        load_config(overrides={"model.colour": 1})
    assert load_config(method="planet").rerank_alpha == 1.0
    assert (
        load_config(method="clip").rerank_alpha
        == load_config(method="crosstext2loc").rerank_alpha
        == 0.0
    )
    with pytest.raises(PlanetlocError, match="method must be one of"):
        load_config(method="resnet")
    with pytest.raises(PlanetlocError, match="unknown physical branch 'smell'"):
        load_config(overrides={"branches": "color,smell"})
    bad = tmp_path / "c.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(PlanetlocError, match="invalid YAML"):
        load_config(bad)
    good = tmp_path / "g.yaml"
    good.write_text("method: crosstext2loc\nsteps: 12\nmodel:\n  embed_dim: 64\n")
    cfg = load_config(good, overrides={"lr": 0.01})
    assert (cfg.method, cfg.steps, cfg.model.embed_dim, cfg.lr, cfg.model.max_tokens) == (
        "crosstext2loc",
        12,
        64,
        0.01,
        248,
    )
