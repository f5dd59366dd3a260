"""PLANET against its baselines and ablations on the default SynthCORE world, 3 seeds.

Variants, all with the same data, trainer and step budget:

* ``clip``: L_itc with 77-token truncation;
* ``crosstext2loc``: L_itc with the full 248 tokens (also the lambda = 0 ablation);
* ``planet``: L_itc + 0.5 * (L_color + L_struc + L_tex), 248 tokens;
* ``planet+rerank``: the planet model, top-50 re-ranked by s_itc + 1.0 * physical agreement;
* ``planet-no-{color,struc,tex}``: planet with one physical branch switched off;
* ``zero-shot``: the untrained planet model (pretrained MiniLM, random heads).

Prints mean +- std over seeds of world-level R@1/R@5/R@10 (full gallery) and R@1 under the
100-nearest protocol, and writes benchmarks/results/synthcore.json. Finished runs are reused,
so an interrupted benchmark resumes.

    .venv/bin/python benchmarks/synthcore.py [--seeds 0 1 2] [--steps 300] [--work runs/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from planetloc.atomic import write_text
from planetloc.baselines.evaluate import evaluate_text_to_signature
from planetloc.data.images import load_tiles
from planetloc.data.manifest import read_manifest
from planetloc.data.synth.generate import SynthConfig, generate_world
from planetloc.eval.evaluate import evaluate_model
from planetloc.model.planet import Planet
from planetloc.train.checkpoint import load_model, read_checkpoint
from planetloc.train.config import load_config
from planetloc.train.data import signatures_of
from planetloc.train.trainer import train

TRAINED = {
    "clip": ("clip", {}),
    "crosstext2loc": ("crosstext2loc", {}),
    "planet": ("planet", {}),
    "planet-no-color": ("planet", {"branches": "struc,tex"}),
    "planet-no-struc": ("planet", {"branches": "color,tex"}),
    "planet-no-tex": ("planet", {"branches": "color,struc"}),
}
RERANK_ALPHA = 1.0


def world_row(report: dict) -> dict[str, float]:
    world = report["sets"]["world"]
    return {k: world["full"][k] for k in ("R@1", "R@5", "R@10")} | {
        "m100 R@1": world["m100"]["R@1"]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--work", default="runs/bench")
    parser.add_argument("--variants", nargs="+", default=[*TRAINED, "planet+rerank", "zero-shot"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "synthcore.json"))
    args = parser.parse_args()
    work = Path(args.work)
    manifest = read_manifest(generate_world(SynthConfig(), work / "world", workers=2))
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    timings: dict[str, float] = {}
    baseline = evaluate_text_to_signature(manifest)["sets"]["world"]["baseline"]
    chance = float("nan")
    for seed in args.seeds:
        for variant in args.variants:
            start = time.perf_counter()
            report = run_variant(variant, seed, args.steps, manifest, work)
            chance = 100.0 / report["sets"]["world"]["full"]["gallery"]
            results[variant].append(world_row(report))
            timings[f"{variant}-seed{seed}"] = round(time.perf_counter() - start, 1)
            print(f"seed {seed} {variant:18s} {world_row(report)}", flush=True)
            # Written after every run: an interrupted benchmark still leaves its numbers.
            write_results(args, results, timings, chance, baseline)
    print(f"\n{'variant':18s} " + " ".join(f"{k:>14s}" for k in ("R@1", "R@5", "R@10", "m100 R@1")))
    for variant, stats in summarise(results).items():
        print(
            f"{variant:18s} "
            + " ".join(f"{v['mean']:7.2f} +- {v['std']:4.2f}" for v in stats.values())
        )
    print(f"chance R@1 {chance:.3f}; text-to-signature baseline R@1 {baseline['R@1']:.2f}")
    return 0


def run_variant(variant: str, seed: int, steps: int, manifest, work: Path) -> dict:
    if variant == "zero-shot":
        torch.manual_seed(seed)
        cfg = load_config(method="planet", overrides={"seed": seed})
        model = Planet(cfg.model)
        tiles = load_tiles(
            manifest, manifest.by_split("train"), size=cfg.model.image_size, progress=False
        )
        model.signature_heads.set_statistics(signatures_of(model, tiles))
        return evaluate_model(model, manifest, progress=False)
    base = "planet" if variant == "planet+rerank" else variant
    method, extra = TRAINED[base]
    out = work / f"{base}-seed{seed}"
    overrides = {"data": str(manifest.path), "out": str(out), "steps": steps, "seed": seed, **extra}
    cfg = load_config(method=method, overrides=overrides)
    ckpt = out / "checkpoint.pt"
    if not (ckpt.exists() and read_checkpoint(ckpt)["step"] >= steps):
        train(cfg, resume=ckpt.exists(), progress=False)
    alpha = RERANK_ALPHA if variant == "planet+rerank" else 0.0
    return evaluate_model(load_model(ckpt), manifest, progress=False, rerank_alpha=alpha)


def summarise(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    out = {}
    for variant, rows in results.items():
        if rows:
            out[variant] = {
                k: {
                    "mean": float(np.mean([r[k] for r in rows])),
                    "std": float(np.std([r[k] for r in rows])),
                    "n": len(rows),
                }
                for k in rows[0]
            }
    return out


def write_results(
    args: argparse.Namespace, results: dict, timings: dict, chance: float, baseline: dict
) -> None:
    payload = {
        "benchmark": "synthcore",
        "world": "SynthConfig() default, seed 0",
        "steps": args.steps,
        "seeds": args.seeds,
        "rerank_alpha": RERANK_ALPHA,
        "chance_R@1": chance,
        "text_to_signature_baseline": baseline,
        "summary": summarise(results),
        "per_seed": results,
        "seconds": timings,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_text(args.out, json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
