"""The main job on the embedded default: synthesise, fit the baseline, train, compare.

Every step is reused when its output exists, so an interrupted demo resumes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from planetloc.data.synth.generate import SynthConfig, check_world, generate_world
from planetloc.devices import cpu_has_native_bf16
from planetloc.eval.protocols import evaluation_table
from planetloc.train.config import load_config
from planetloc.workflows.baseline import run_baseline
from planetloc.workflows.comparison import answered_examples, write_comparison
from planetloc.workflows.evaluation import run_evaluation
from planetloc.workflows.models import trained
from planetloc.workflows.runs import train_or_reuse

METHODS = ("planet", "itc-long")  # PLANET against its lambda = 0 recipe, same backbone


def synthesise(
    cfg: SynthConfig,
    out: Path,
    workers: int,
    say: Callable[[str], None] = print,
    progress: bool = True,
) -> Path:
    """Generate (or finish) a SynthCORE world with a progress bar; return its manifest."""
    from tqdm import tqdm

    check_world(cfg, out)  # refused settings never leave a progress bar behind
    unit = "shard" if cfg.shards else "region"
    with tqdm(desc=f"synthesising {unit}s", unit=unit, disable=not progress) as bar:

        def tick(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        manifest = generate_world(cfg, out, workers=workers, progress=tick)
    summary = json.loads((out / "world.json").read_text(encoding="utf-8"))
    say(f"wrote {summary['samples']} samples to {manifest} ({summary['splits']})")
    return manifest


def demo_amp(amp: str) -> str:
    """The demo's training arithmetic: ``auto`` is bf16 autocast where the hardware does bf16
    natively (CUDA, or a CPU with AMX / AVX512-BF16), float32 elsewhere."""
    if amp != "auto":
        return amp
    return "bf16" if torch.cuda.is_available() or cpu_has_native_bf16() else "off"


def demo_world(seed: int) -> SynthConfig:
    """The default SynthCORE world without its street panoramas: the demo compares text
    queries only, and rendering a panorama per sample was a third of its synthesis time."""
    return SynthConfig(seed=seed, street_views=False)


def run_demo(
    out: str | Path,
    *,
    seed: int = 0,
    steps: int = 300,
    workers: int = 2,
    amp: str = "auto",
    say: Callable[[str], None] = print,
    world: SynthConfig | None = None,
    settings: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the evaluation reports by method.

    ``world`` (default: the default SynthCORE world of ``seed``) and ``settings`` (training
    overrides, e.g. a smaller model) exist for trials and tests; the demo uses neither.
    """
    out = Path(out)
    amp = demo_amp(amp)
    world = world or demo_world(seed)
    say(
        f"1/4 synthesising SynthCORE ({world.regions} regions x {world.per_region} samples) "
        f"in {out / 'world'}"
    )
    manifest = synthesise(world, out / "world", workers, say, progress=progress)
    say("2/4 text-to-signature baseline")
    _, table = run_baseline(str(manifest), out)
    say(table)
    reports = {}
    for i, method in enumerate(METHODS):
        arithmetic = "bf16 autocast" if amp == "bf16" else "float32"
        say(
            f"3/4 training {method} ({i + 1}/{len(METHODS)}, {steps} steps, same data and "
            f"budget, {arithmetic})"
        )
        cfg = load_config(
            method=method,
            overrides={
                "data": str(manifest),
                "out": str(out / method),
                "steps": steps,
                "seed": seed,
                "amp": amp,
                **(settings or {}),
            },
        )
        ckpt = train_or_reuse(cfg, progress=progress)
        reports[method] = run_evaluation(
            str(manifest), str(out), name=method, loaded=trained(str(ckpt)), progress=progress
        )
    say("4/4 comparison (full gallery; m100 = the 100 tiles nearest the true tile)")
    say(write_comparison(reports, out))
    tiles = evaluation_table(str(manifest))
    regions = dict(zip(tiles.id.tolist(), tiles.region.tolist(), strict=True))
    say("\nExample queries answered by planet (top-5 locations):")
    say(answered_examples(reports["planet"], regions))
    say(f"\ndemo results in {out}")
    return reports
