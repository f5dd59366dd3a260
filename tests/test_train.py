"""Training: streaming from manifests and shards, exact resume (one process and DDP), DDP
gradients, divergence, settings, checkpoints that cannot run code, and learning."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL
from planetloc.data.manifest import Manifest
from planetloc.errors import PlanetlocError
from planetloc.model.checkpoint import load_model, read_checkpoint, read_tensors
from planetloc.train.config import load_config
from planetloc.train.distributed import DistInfo
from planetloc.train.trainer import TrainStep, augment_tiles, compute_loss, train

TESTS = Path(__file__).parent


def _tiny_config(data: str | Path, out: Path, **extra: object):
    overrides = {
        "data": str(data),
        "out": str(out),
        "batch_size": 16,
        "steps": 6,
        "log_every": 1,
        "save_every": 3,
        "eval_every": 0,
        "warmup_steps": 2,
        "workers": 0,
        "shuffle_buffer": 64,
        **TINY_MODEL,
        **extra,
    }
    return load_config(method="planet", overrides=overrides)


def _losses(run: Path) -> list[dict]:
    rows = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [r for r in rows if "loss" in r]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_tensors(read_checkpoint(run), "model.")


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly(small_world: Manifest, tmp_path: Path, workers: int) -> None:
    full, part = tmp_path / "full", tmp_path / "part"
    train(_tiny_config(small_world.path, full, workers=workers), progress=False)
    train(_tiny_config(small_world.path, part, workers=workers), progress=False, stop_after=4)
    assert read_checkpoint(part).step == 3  # the last checkpoint before the "crash"
    with pytest.raises(PlanetlocError, match="pass --resume"):
        train(_tiny_config(small_world.path, part, workers=workers), progress=False)
    train(_tiny_config(small_world.path, part, workers=workers), progress=False, resume=True)
    a, b = _losses(full), _losses(part)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b, strict=True):
        assert ra["loss"] == rb["loss"], (ra, rb)
    wa, wb = _weights(full), _weights(part)
    assert set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)
    # A different number of workers would deal the data out differently: refused.
    with pytest.raises(PlanetlocError, match=r"other settings \(workers\)"):
        train(
            _tiny_config(small_world.path, part, workers=1 if workers == 0 else 0, steps=8),
            progress=False,
            resume=True,
        )


def _torchrun(*args: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_process_ddp_resume_continues_exactly(small_world: Manifest, tmp_path: Path) -> None:
    script = str(TESTS / "ddp_train.py")
    data = str(small_world.path)
    _torchrun(script, data, str(tmp_path / "full"), "5", "0", "0")
    _torchrun(script, data, str(tmp_path / "part"), "5", "3", "0")  # dies after step 3
    assert read_checkpoint(tmp_path / "part").step == 2
    _torchrun(script, data, str(tmp_path / "part"), "5", "0", "1")
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    wa, wb = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_two_process_ddp_equals_one_process_on_the_global_batch(tmp_path: Path) -> None:
    sys.path.insert(0, str(TESTS))
    from ddp_batch import build

    model, cfg, text, tiles, sigs = build()
    parts = compute_loss(TrainStep(model), model, cfg, text, tiles, sigs, None, DistInfo(), 0)
    parts.total.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    out = tmp_path / "ddp.pt"
    _torchrun(str(TESTS / "ddp_worker.py"), str(out))
    ddp = torch.load(out, weights_only=True)
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
        None,
        DistInfo(),
        0,
    )
    assert abs(half.total.item() - parts.total.item()) > 1e-3


def test_training_streams_from_webdataset_shards(small_world: Manifest, tmp_path: Path) -> None:
    from planetloc.data.pack import write_dataset_shards
    from planetloc.data.table import read_table

    shards = write_dataset_shards(read_table(small_world.path), tmp_path / "data", shard_size=40)
    assert len(shards) >= 4
    summary = train(_tiny_config(tmp_path / "data", tmp_path / "run"), progress=False)
    assert "shards" in summary["data"] and summary["steps"] == 6
    assert read_checkpoint(tmp_path / "run").step == 6


def _shard(path: Path, members: list[tuple[str, bytes]]) -> None:
    from planetloc.data.shards import write_tar

    write_tar(path, members)


def _sample_members(world: Manifest, index: int) -> list[tuple[str, bytes]]:
    from planetloc.data.shards import sample_key

    s = world.by_split("train")[index]
    key = sample_key(s.id)
    return [
        (f"{key}.json", json.dumps(s.to_dict()).encode()),
        (f"{key}.sat.png", world.resolve(s.sat_path).read_bytes()),
    ]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "truncated or damaged shard"),
        ("no-image", "has no satellite image"),
        ("no-json", "has no .* record"),
        ("duplicate", "duplicated member"),
    ],
)
def test_bad_shards_stop_with_one_line_or_are_skipped_and_counted(
    small_world: Manifest, tmp_path: Path, damage: str, message: str
) -> None:
    data = tmp_path / "data" / "shards"
    good = [m for i in range(20) for m in _sample_members(small_world, i)]
    _shard(data / "a-000000.tar", good)
    bad = [m for i in range(20, 40) for m in _sample_members(small_world, i)]
    if damage == "no-image":
        bad = [m for m in bad if m[0] != bad[1][0]]  # the first sample loses its tile
    elif damage == "no-json":
        bad = [m for m in bad if m[0] != bad[0][0]]
    elif damage == "duplicate":
        bad = [bad[0], *bad]
    _shard(data / "b-000000.tar", bad)
    if damage == "truncate":
        raw = (data / "b-000000.tar").read_bytes()
        (data / "b-000000.tar").write_bytes(raw[: len(raw) // 2 + 100])
    with pytest.raises(PlanetlocError, match=message) as err:
        train(_tiny_config(tmp_path / "data", tmp_path / "run"), progress=False)
    assert "b-000000.tar" in str(err.value) and "\n" not in str(err.value)
    summary = train(
        _tiny_config(tmp_path / "data", tmp_path / "skip", on_bad_sample="skip"), progress=False
    )
    assert summary["skipped_samples"] >= 1


def test_divergence_stops_with_one_line_naming_step_and_checkpoint(
    small_world: Manifest, tmp_path: Path
) -> None:
    cfg = _tiny_config(small_world.path, tmp_path, steps=20, lr=1e30, warmup_steps=0, save_every=1)
    with pytest.raises(PlanetlocError) as err:
        train(cfg, progress=False)
    text = str(err.value)
    assert "training diverged at step" in text and "not finite" in text
    step = int(text.split("at step ")[1].split(":")[0])
    if step > 1:
        assert f"(step {step - 1})" in text and "checkpoint.safetensors" in text
        weights = _weights(tmp_path)
        assert all(torch.isfinite(v).all() for v in weights.values())
    else:
        assert "no checkpoint was saved yet" in text


def test_settings_are_type_checked_once(tmp_path: Path) -> None:
    assert load_config(overrides={"lr": "3e-4"}).lr == pytest.approx(3e-4)
    yaml = tmp_path / "c.yaml"
    yaml.write_text("lr: 1e-4\nsteps: 12\nmodel:\n  embed_dim: 64\n")
    cfg = load_config(yaml)
    assert isinstance(cfg.lr, float) and cfg.lr == pytest.approx(1e-4) and cfg.steps == 12
    for key, value, message in [
        ("steps", 2.5, "'steps' must be an integer"),
        ("model.embed_dim", "abc", r"'model\.embed_dim' must be an integer"),
        ("lr", "nan", "'lr' must be a finite number"),
        ("lr", float("inf"), "'lr' must be a finite number"),
        ("batch_size", 0, "'batch_size' must be at least 1"),
        ("lambda_phy", -1, "'lambda_phy' must not be negative"),
        ("augment", "maybe", "'augment' must be true or false"),
        ("model.colour", 1, r"unknown setting 'model\.colour'"),
        ("branches", "color,smell", "unknown physical branch 'smell'"),
    ]:
        with pytest.raises(PlanetlocError, match=message):
            load_config(overrides={key: value})
    with pytest.raises(PlanetlocError, match="method must be one of"):
        load_config(method="clip")  # recipes are named for what they are
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    with pytest.raises(PlanetlocError, match="invalid YAML"):
        load_config(bad)


def test_words_like_off_stay_words(tmp_path: Path) -> None:
    """YAML 1.1 reads off/on/yes/no as booleans; settings whose values are those words must
    get the words, from --set and from config files alike."""
    from planetloc.yaml_config import parse_overrides

    cfg = load_config(
        overrides=parse_overrides(["text_cache=off", "signature_cache=off", "augment=off"])
    )
    assert (cfg.text_cache, cfg.signature_cache, cfg.augment) == ("off", "off", False)
    yaml = tmp_path / "c.yaml"
    yaml.write_text("text_cache: off\naugment: yes\nselect_alpha: false\n")
    cfg = load_config(yaml)
    assert (cfg.text_cache, cfg.augment, cfg.select_alpha) == ("off", True, False)
    with pytest.raises(PlanetlocError, match="--set steps: value '\\[1,' is not YAML"):
        parse_overrides(["steps=[1,"])


class _Boom:
    """Unpickling this runs code: a stand-in for a hostile checkpoint."""

    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PLANETLOC_PWNED']}",))


def test_checkpoints_that_would_run_code_are_refused(tmp_path: Path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("PLANETLOC_PWNED", str(marker))
    for name in ("checkpoint.pt", "checkpoint.safetensors"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"model": _Boom()}))
        with pytest.raises(PlanetlocError) as err:
            load_model(path)
        assert "\n" not in str(err.value)
    assert not marker.exists()


def test_checkpoint_errors_are_one_line(small_world: Manifest, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_tiny_config(small_world.path, run, steps=3), progress=False)
    with pytest.raises(PlanetlocError, match=r"other settings \(lambda_phy\)"):
        train(
            _tiny_config(small_world.path, run, steps=6, lambda_phy=0.1),
            progress=False,
            resume=True,
        )
    raw = (run / "checkpoint.safetensors").read_bytes()
    (tmp_path / "corrupt.safetensors").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(PlanetlocError, match="not a readable safetensors checkpoint"):
        load_model(tmp_path / "corrupt.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(PlanetlocError, match="not a planetloc checkpoint"):
        load_model(tmp_path / "foreign.safetensors")
    with pytest.raises(PlanetlocError, match="checkpoint not found"):
        load_model(tmp_path / "absent.safetensors")


def test_frozen_random_trunks_are_saved_so_reloading_gives_the_same_model(
    small_world: Manifest, tmp_path: Path
) -> None:
    train(_tiny_config(small_world.path, tmp_path, steps=1), progress=False)
    a, b = load_model(tmp_path), load_model(tmp_path)
    enc, _ = a.tokenize(["a quiet street by a river"])
    with torch.no_grad():
        ea = a.encode_text(enc["input_ids"], enc["attention_mask"]).global_
        eb = b.encode_text(enc["input_ids"], enc["attention_mask"]).global_
    assert torch.equal(ea, eb)


def test_itc_77_truncates_and_says_so(small_world: Manifest, tmp_path: Path) -> None:
    overrides = {
        "data": str(small_world.path),
        "steps": 1,
        "batch_size": 16,
        "eval_every": 0,
        "workers": 0,
        "text_cache": "off",
        **TINY_MODEL,
    }
    cut = train(
        load_config(method="itc-77", overrides={**overrides, "out": str(tmp_path / "a")}),
        progress=False,
    )
    assert cut["truncated_fraction"] > 0.5  # SynthCORE descriptions run past 77 tokens
    full = train(
        load_config(method="itc-long", overrides={**overrides, "out": str(tmp_path / "b")}),
        progress=False,
    )
    assert full["truncated_fraction"] == 0.0


def test_alpha_is_chosen_on_val_and_recorded(small_world: Manifest, tmp_path: Path) -> None:
    train(_tiny_config(small_world.path, tmp_path, steps=2, eval_every=2), progress=False)
    selection = read_checkpoint(tmp_path).extra["selection"]
    assert selection["split"] == "val" and selection["queries"] == len(small_world.by_split("val"))
    assert [r["alpha"] for r in selection["sweep"]] == [0.0, 0.25, 0.5, 1.0, 2.0]
    best = max(r["score"] for r in selection["sweep"])
    chosen = next(r for r in selection["sweep"] if r["alpha"] == selection["alpha"])
    assert chosen["score"] == best


def test_short_real_training_learns(small_world: Manifest, tmp_path: Path) -> None:
    """The embedded default (real MiniLM + scratch CNN), 80 steps of batch 32, seed 0."""
    from planetloc.workflows.demo import demo_amp
    from planetloc.workflows.evaluation import run_evaluation
    from planetloc.workflows.models import zero_shot

    cfg = load_config(
        method="planet",
        overrides={
            "data": str(small_world.path),
            "out": str(tmp_path / "run"),
            "steps": 80,
            "batch_size": 32,
            "eval_every": 0,
            "select_alpha": False,
            "seed": 0,
            # The demo's arithmetic: bf16 autocast where the CPU does bf16 natively.
            "amp": demo_amp("auto"),
        },
    )
    summary = train(cfg, progress=False)
    losses = [r["loss"] for r in summary["history"] if "loss" in r]
    assert losses[-1] < 0.6 * losses[0]
    untrained = run_evaluation(
        str(small_world.path),
        str(tmp_path / "zs"),
        loaded=zero_shot("minilm-cnn", str(small_world.path)),
        progress=False,
    )["sets"]["world"]["full"]
    world = run_evaluation(
        str(small_world.path),
        str(tmp_path / "ev"),
        checkpoint=str(tmp_path / "run"),
        rerank_alpha=0.0,
        progress=False,
    )["sets"]["world"]
    full = world["full"]
    chance_r10 = 100 * 10 / full["gallery"]
    # Stated margin (seeded; five description styles make it harder than one): R@10 at least
    # 3x chance and 8 points above the untrained model.
    assert full["R@10"] >= 3 * chance_r10, full
    assert full["R@10"] >= untrained["R@10"] + 8, (full, untrained)
    assert world["m100"]["R@1"] >= full["R@1"]  # the geographic prior never hurts
    assert np.isfinite(full["median_error_km"])


def test_bf16_autocast_on_cpu_when_asked(
    small_world: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """amp: bf16 trains under bf16 autocast on CPU too; auto stays float32 there."""
    seen: list[torch.dtype] = []
    real = compute_loss

    def spy(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return real(*args, **kwargs)

    monkeypatch.setattr("planetloc.train.trainer.compute_loss", spy)
    cache = tmp_path / "cache"
    fp32 = _tiny_config(small_world.path, tmp_path / "fp32", steps=2, text_cache=str(cache))
    bf16 = _tiny_config(
        small_world.path, tmp_path / "bf16", steps=2, text_cache=str(cache), amp="bf16"
    )
    train(fp32, progress=False)
    assert seen == [None, None]
    train(bf16, progress=False)
    assert seen[2:] == [torch.bfloat16, torch.bfloat16]
    a, b = _losses(tmp_path / "fp32"), _losses(tmp_path / "bf16")
    assert all(np.isfinite(r["loss"]) for r in a + b)
    assert a[0]["loss"] != b[0]["loss"]
    assert abs(a[0]["loss"] - b[0]["loss"]) < 0.05 * a[0]["loss"]
    # The frozen trunk's features were cached once per arithmetic.
    assert len(list(cache.glob("trunk-*"))) == 2


def test_runs_saved_before_a_setting_existed_resume_with_its_old_value() -> None:
    from planetloc.train.trainer import _config_differences

    current = {"lr": 0.001, "exclude_styles": (), "informal_prob": 0.0, "steps": 9}
    assert _config_differences({"lr": 0.001, "steps": 5}, current) == []
    assert _config_differences({"lr": 0.001}, {**current, "informal_prob": 0.3}) == [
        "informal_prob"
    ]


def test_a_style_held_out_of_training_and_informal_rewrites_train_from_the_cache(
    small_world: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frozen trunk's cache holds every text such a run reads (a missing one would stop
    the run), and the batches hold rewrites and never the excluded style's phrasings."""
    from planetloc.data.informal import informal
    from planetloc.train import trainer

    read: list[str] = []
    real = trainer._text_batch

    def spy(model, cache, texts, device):
        assert cache is not None  # the frozen trunk is read from the cache
        read.extend(texts)
        return real(model, cache, texts, device)

    monkeypatch.setattr(trainer, "_text_batch", spy)
    cfg = _tiny_config(
        small_world.path,
        tmp_path / "run",
        steps=3,
        text_cache=str(tmp_path / "cache"),
        alt_text_prob=1.0,
        exclude_styles="chatty",
        informal_prob=0.5,
    )
    train(cfg, progress=False)
    assert read_checkpoint(tmp_path / "run").train_config["exclude_styles"] == ["chatty"]
    phrasings = [
        {s.meta["style"]: s.text, **s.meta["alt_texts"]} for s in small_world.by_split("train")
    ]
    readable = {t for p in phrasings for style, t in p.items() if style != "chatty"}
    rewrites = {informal(t) for t in readable}
    assert len(read) == 3 * 16 and set(read) <= readable | rewrites
    assert not {p["chatty"] for p in phrasings} & set(read)
    assert 0 < sum(t in rewrites for t in read) < len(read)  # about half are rewrites


def test_a_style_name_no_training_text_has_is_refused(
    small_world: Manifest, tmp_path: Path
) -> None:
    cfg = _tiny_config(small_world.path, tmp_path / "run", exclude_styles="chatty,chaty")
    with pytest.raises(PlanetlocError) as err:
        train(cfg, progress=False)
    text = str(err.value)
    assert "is in style 'chaty';" in text and "\n" not in text
    assert "chatty" in text.split("their styles: ")[1]  # the names that do exist are listed
    assert not (tmp_path / "run").exists()  # refused before any work


@pytest.mark.parametrize(
    "path",
    sorted(p.name for p in (TESTS.parent / "configs").glob("*.yaml") if "build" not in p.name),
)
def test_every_shipped_training_config_loads(path: str) -> None:
    cfg = load_config(TESTS.parent / "configs" / path)
    assert cfg.method in ("planet", "itc-long", "itc-77") and cfg.steps > 0


def _shift_by_padding(tiles: torch.Tensor, generator: torch.Generator, max_shift: int = 4):
    """The augmentation written the plain way: pad with replicated borders, cut each tile's
    window, then apply gain and offset (same draws in the same order)."""
    b, _, h, w = tiles.shape
    padded = torch.nn.functional.pad(tiles.float(), (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=generator)
    shifted = torch.stack(
        [padded[i, :, r : r + h, c : c + w] for i, (r, c) in enumerate(offsets.tolist())]
    )
    gain = 1 + (torch.rand(b, 3, 1, 1, generator=generator) - 0.5) * 0.16
    offset = (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 12
    return (shifted * gain + offset).clamp(0, 255).round().to(torch.uint8)


@pytest.mark.parametrize("shape", [(1, 3, 5, 5), (6, 3, 17, 23), (3, 3, 64, 64)])
def test_tile_augmentation_is_a_bordered_shift_with_gain_and_offset(shape: tuple) -> None:
    tiles = torch.randint(
        0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1)
    )
    original = tiles.clone()
    out = augment_tiles(tiles, torch.Generator().manual_seed(7))
    assert out.dtype == torch.uint8 and out.shape == tiles.shape
    assert torch.equal(out, _shift_by_padding(tiles, torch.Generator().manual_seed(7)))
    assert torch.equal(out, augment_tiles(tiles, torch.Generator().manual_seed(7)))
    assert not torch.equal(out, augment_tiles(tiles, torch.Generator().manual_seed(8)))
    assert torch.equal(tiles, original)  # input untouched
