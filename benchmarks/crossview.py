"""Cross-view localisation on SynthCORE: street image -> satellite, text -> satellite, and joint
(text + street image) queries scored by MAPS-style projection or by simple fusions.

Runs (default world, same data, trainer, steps and arithmetic, seeds 0..N-1; backbone
minilm-cnn, a street-view CNN trained from scratch; bf16 autocast where the CPU does bf16
natively, float32 elsewhere):

* ``text``: the PLANET recipe (descriptions only);
* ``image``: street panoramas as queries, in-batch negatives only;
* ``image+hardneg``: batches made of groups of 4 geographic neighbours (hard negatives);
* ``image+hardneg+north``: panoramas rolled north-up with the view's compass heading;
* ``joint``: text and image towers trained together, the joint loss on the projection score;
* ``joint+north``: the same with north-up panoramas;
* ``joint-w0.25``: ``joint`` with its view and joint losses weighted 0.25 instead of 1 beside
  the text objective (``view_weight``, ``joint_weight``), so that the street losses no longer
  outweigh the text loss on the shared satellite tower. The weight was set before the run,
  not chosen on test; it is one ablation, not a tuned setting.

Each joint model is evaluated with projection, with the mean of its two query embeddings and
with the sum of the two scores; ``joint`` also with each modality alone. The street-view render
throughput is measured in the same run. Writes benchmarks/results/crossview.json after every
run.

    .venv/bin/python benchmarks/crossview.py [--seeds 3] [--steps 500] [--parallel 2]
        [--variants text image+hardneg+north joint+north]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from earlier import earlier_results
from planetloc.atomic import write_text
from planetloc.data.synth.config import SynthConfig

RESULTS = Path(__file__).parent / "results" / "crossview.json"
VARIANTS: dict[str, dict[str, Any]] = {
    "text": {},
    "image": {"model.query": "image"},
    "image+hardneg": {"model.query": "image", "neighbours": 4},
    "image+hardneg+north": {
        "model.query": "image",
        "neighbours": 4,
        "model.street_align": "north",
    },
    "joint": {"model.query": "joint", "neighbours": 4},
    "joint+north": {"model.query": "joint", "neighbours": 4, "model.street_align": "north"},
    "joint-w0.25": {
        "model.query": "joint",
        "neighbours": 4,
        "view_weight": 0.25,
        "joint_weight": 0.25,
    },
}
# How each variant's model is queried at test time: (label, query kind, joint score).
QUERIES: dict[str, list[tuple[str, str, str | None]]] = {
    "text": [("text", "text", None)],
    "image": [("image", "image", None)],
    "image+hardneg": [("image", "image", None)],
    "image+hardneg+north": [("image", "image", None)],
    "joint": [
        ("projection", "joint", "projection"),
        ("mean", "joint", "mean"),
        ("sum", "joint", "sum"),
        ("text alone", "text", None),
        ("image alone", "image", None),
    ],
    "joint+north": [
        ("projection", "joint", "projection"),
        ("mean", "joint", "mean"),
        ("sum", "joint", "sum"),
    ],
}
QUERIES["joint-w0.25"] = QUERIES["joint"]
KEYS = ("R@1", "R@5", "R@10", "L@50", "L@100", "L@150", "median_error_km")


def _run(args: tuple[str, int, int, str, int]) -> dict[str, Any]:
    """Train one variant and evaluate it every way it can be queried (own process)."""
    name, seed, steps, work, threads = args
    import torch

    torch.set_num_threads(threads)
    from planetloc.devices import cpu_has_native_bf16
    from planetloc.train.config import load_config
    from planetloc.workflows.evaluation import run_evaluation
    from planetloc.workflows.models import trained
    from planetloc.workflows.runs import train_or_reuse

    out = Path(work) / "crossview" / f"{name}-seed{seed}"
    run_dir = out / "run"
    cfg = load_config(
        method="planet",
        overrides={
            "data": str(Path(work) / "world"),
            "out": str(run_dir),
            "steps": steps,
            "seed": seed,
            "eval_every": 0,
            "select_alpha": False,  # evaluated without re-ranking: nothing to choose
            "workers": 1,
            # Every variant in the same arithmetic: bf16 autocast where the CPU does it natively
            # (street views are 4x a tile's pixels; float32 would take hours on 2 cores).
            "amp": "bf16" if cpu_has_native_bf16() else "off",
            **VARIANTS[name],
        },
    )
    started = time.perf_counter()
    ckpt = train_or_reuse(cfg, progress=False)
    train_s = time.perf_counter() - started
    loaded = trained(str(ckpt))
    result: dict[str, Any] = {
        "train_seconds": round(train_s, 1),
        "amp": cfg.amp,
        "queries": {},
    }
    for label, kind, how in QUERIES[name]:
        report = run_evaluation(
            str(Path(work) / "world"),
            str(out / "eval"),
            name=label.replace(" ", "-"),
            loaded=loaded,
            query=kind,
            joint_score=how,
            rerank_alpha=0.0,
            progress=False,
        )
        world = report["sets"]["world"]
        result["queries"][label] = {
            "full": {k: world["full"][k] for k in KEYS},
            "m100": {k: world["m100"][k] for k in KEYS},
        }
    return {"name": name, "seed": seed, **result}


def _earlier(path: Path, steps: int, seeds: int, asked: list[str]) -> dict[str, Any]:
    """Runs of the variants not asked for now, from an earlier results file with the same
    steps (each run is one variant and seed, trained and evaluated on its own)."""
    runs = earlier_results(path, steps, list(range(seeds))).get("runs", {})
    return {name: r for name, r in runs.items() if name in VARIANTS and name not in asked}


def _render_rate(work: Path) -> dict[str, float]:
    """Street panoramas per second on one core (512 x 128), from a region of the world."""
    import subprocess
    import sys

    out = work / "street_render.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = Path(__file__).parent / "street_render.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, env=env)
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME"
    )
    parser.add_argument("--work", default="runs/bench")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    from planetloc.data.synth.generate import generate_world

    work = Path(args.work)
    started = time.perf_counter()
    generate_world(SynthConfig(), work / "world", workers=2)
    kept = _earlier(Path(args.out), args.steps, args.seeds, args.variants)
    results: dict[str, Any] = {
        "benchmark": "crossview",
        "world": "SynthConfig() default (512 x 128 street panoramas)",
        "steps": args.steps,
        "seeds": list(range(args.seeds)),
        "variants": [v for v in VARIANTS if v in kept or v in args.variants],
        "render": _render_rate(work),
        "runs": kept,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }

    def save() -> None:
        results["seconds"] = round(time.perf_counter() - started, 1)
        results["summary"] = summarise(results)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(results, indent=1) + "\n")

    threads = max(1, (os.cpu_count() or 2) // args.parallel)
    jobs = [
        (n, s, args.steps, str(work), threads) for s in range(args.seeds) for n in args.variants
    ]
    with ProcessPoolExecutor(max_workers=args.parallel) as pool:
        for run in pool.map(_run, jobs):
            results["runs"].setdefault(run["name"], {})[str(run["seed"])] = run
            print(f"{run['name']} seed {run['seed']}: {run['queries']}", flush=True)
            save()
    print(json.dumps(results["summary"], indent=1))
    return 0


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Mean and std over seeds of every (variant, query) metric on the world set."""
    out: dict[str, Any] = {}
    for name, seeds in results["runs"].items():
        labels = next(iter(seeds.values()))["queries"]
        for label in labels:
            for protocol in ("full", "m100"):
                values = {
                    k: [s["queries"][label][protocol][k] for s in seeds.values()] for k in KEYS
                }
                out.setdefault(f"{name} / {label}", {})[protocol] = {
                    k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)}
                    for k, v in values.items()
                }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
