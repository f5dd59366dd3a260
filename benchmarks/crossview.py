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
* ``joint-w0.5``, ``joint-w0.25``, ``joint-w0.1``: ``joint`` with its view and joint losses
  weighted below 1 beside the text objective (``view_weight`` = ``joint_weight`` = w), so that
  the street losses no longer outweigh the text loss on the shared satellite tower;
* ``joint-w0.25-inbatch``: ``joint-w0.25`` with in-batch negatives only, as the text model
  is trained (the joint variants above batch groups of 4 geographic neighbours); the weight
  and the negatives are chosen together;
* ``late-fusion``: no training of its own; each seed's ``text`` model and image model asked
  together, scored by s_text + w * s_image (the image variant, then w, chosen on val).

Each joint model is evaluated with projection, with the mean of its two query embeddings and
with the sum of the two scores, and with each modality alone. Every query of every run is also
scored on the val split (val queries against val tiles, as training validates): the street-loss
weight w and the negatives are chosen on val (the best mean over seeds of mean(R@1, R@5, R@10)
of the projection query), and the summary's ``selection`` records the sweep and the winner
whose test numbers answer the issue's target. The street-view render throughput is measured
in the same run. Writes benchmarks/results/crossview.json after every run.

    .venv/bin/python benchmarks/crossview.py [--seeds 3] [--steps 500] [--parallel 2]
        [--variants text image+hardneg+north joint+north]
    .venv/bin/python benchmarks/crossview.py --steps 200 --variants   # late fusion only
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
}
# The joint variants' street-loss weight w and negatives, chosen together on val (``joint``
# is w = 1 with geographic hard negatives).
JOINT_SETTINGS: dict[str, dict[str, Any]] = {"joint": {"weight": 1.0, "negatives": "neighbours"}}
for _w in (0.5, 0.25, 0.1):
    JOINT_SETTINGS[f"joint-w{_w}"] = {"weight": _w, "negatives": "neighbours"}
    VARIANTS[f"joint-w{_w}"] = VARIANTS["joint"] | {"view_weight": _w, "joint_weight": _w}
# w = 0.25 with in-batch negatives, as the text model is trained: separates the batching from
# the street losses when a joint model's text query falls behind the text model's.
JOINT_SETTINGS["joint-w0.25-inbatch"] = {"weight": 0.25, "negatives": "in-batch"}
VARIANTS["joint-w0.25-inbatch"] = VARIANTS["joint-w0.25"] | {"neighbours": 0}
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
for _name in JOINT_SETTINGS:
    QUERIES[_name] = QUERIES["joint"]
# Late fusion: the text model's score plus w times an image model's score (w chosen on val).
IMAGE_VARIANTS = ("image", "image+hardneg", "image+hardneg+north")
FUSION_WEIGHTS = (0.125, 0.25, 0.5, 1.0, 2.0)
KEYS = ("R@1", "R@5", "R@10", "L@50", "L@100", "L@150", "median_error_km")


def _run_folder(name: str, seed: int, steps: int, work: str) -> Path:
    """Where one variant, seed and step budget trains and is evaluated (budgets apart: a
    finished shorter run is never resumed into a longer one)."""
    return Path(work) / "crossview" / f"{steps}-steps" / f"{name}-seed{seed}"


def _config(name: str, seed: int, steps: int, work: str) -> Any:
    """The training config of one variant and seed (its run folder under ``work``)."""
    from planetloc.devices import cpu_has_native_bf16
    from planetloc.train.config import load_config

    return load_config(
        method="planet",
        overrides={
            "data": str(Path(work) / "world"),
            "out": str(_run_folder(name, seed, steps, work) / "run"),
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


def _run(args: tuple[str, int, int, str, int]) -> dict[str, Any]:
    """Train one variant and evaluate it every way it can be queried (own process)."""
    name, seed, steps, work, threads = args
    import torch

    torch.set_num_threads(threads)
    from planetloc.data.caches import dataset_manifest
    from planetloc.eval.evaluate import evaluate_split
    from planetloc.eval.protocols import split_set
    from planetloc.workflows.evaluation import run_evaluation
    from planetloc.workflows.models import trained
    from planetloc.workflows.runs import train_or_reuse

    out = _run_folder(name, seed, steps, work)
    cfg = _config(name, seed, steps, work)
    started = time.perf_counter()
    ckpt = train_or_reuse(cfg, progress=False)
    train_s = time.perf_counter() - started
    loaded = trained(str(ckpt))
    result: dict[str, Any] = {
        "train_seconds": round(train_s, 1),
        "amp": cfg.amp,
        "queries": {},
    }
    val = split_set(dataset_manifest(Path(work) / "world"), "val")
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
            "val": evaluate_split(loaded.model, val, query=kind, joint_score=how),
        }
    return {"name": name, "seed": seed, **result}


def _fusion(args: tuple[str, int, int, str, int, tuple[float, ...], str]) -> dict[str, Any]:
    """Late fusion of one seed's text model and image model (own process): fused metrics on
    val for every weight of ``weights``, or on the test world set (both protocols) for the
    one weight chosen on val."""
    image_variant, seed, steps, work, threads, weights, split = args
    import torch

    torch.set_num_threads(threads)
    from planetloc.data.caches import dataset_manifest
    from planetloc.eval.fusion import embed_set, fused_metrics
    from planetloc.eval.protocols import evaluation_sets, evaluation_table, split_set
    from planetloc.workflows.models import trained
    from planetloc.workflows.runs import train_or_reuse

    world = Path(work) / "world"
    text = trained(str(train_or_reuse(_config("text", seed, steps, work), progress=False)))
    image = trained(str(train_or_reuse(_config(image_variant, seed, steps, work), progress=False)))
    if split == "val":
        es = split_set(dataset_manifest(world), "val")
    else:
        es = next(s for s in evaluation_sets(evaluation_table(world)) if s.name == "world")
    parts = [embed_set(text.model, es, "text"), embed_set(image.model, es, "image")]
    if split == "val":
        val = {}
        for w in weights:
            metrics = fused_metrics(parts, [1.0, w], es)
            val[str(w)] = {k: metrics[k] for k in ("R@1", "R@5", "R@10")}
        return {"seed": seed, "val": val}
    (w,) = weights
    full = fused_metrics(parts, [1.0, w], es)
    near = fused_metrics(parts, [1.0, w], es, m=100)
    return {"seed": seed, "full": {k: full[k] for k in KEYS}, "m100": {k: near[k] for k in KEYS}}


def late_fusion(results: dict[str, Any], pool: Any, steps: int, work: str, threads: int) -> None:
    """Text model + image model of the same seed, score s_text + w * s_image: the image
    variant and then w chosen on val (mean over seeds of mean(R@1, R@5, R@10)), test once with
    the winners. Adds the ``late-fusion`` run per seed and the ``late_fusion`` selection."""
    seeds = [str(s) for s in results["seeds"]]
    runs = results["runs"]
    images = [
        v
        for v in IMAGE_VARIANTS
        if all(s in runs.get(v, {}) and val_score(runs[v][s], "image") is not None for s in seeds)
    ]
    if not images or not all(s in runs.get("text", {}) for s in seeds):
        return  # the single-modality models have not all run yet
    image_sweep = [
        {"variant": v, "val_score": float(np.mean([val_score(runs[v][s], "image") for s in seeds]))}
        for v in images
    ]
    image = max(image_sweep, key=lambda e: e["val_score"])["variant"]
    jobs = [(image, int(s), steps, work, threads, FUSION_WEIGHTS, "val") for s in seeds]
    val = {str(r["seed"]): r["val"] for r in pool.map(_fusion, jobs)}
    from planetloc.eval.selection import val_criterion  # here: the parent stays torch-free

    weight_sweep = [
        {"weight": w, "val_score": float(np.mean([val_criterion(val[s][str(w)]) for s in seeds]))}
        for w in FUSION_WEIGHTS
    ]
    # Ties: the smaller weight, so the image model is leaned on only where val says it helps.
    best = max(weight_sweep, key=lambda e: (e["val_score"], -e["weight"]))["weight"]
    jobs = [(image, int(s), steps, work, threads, (best,), "test") for s in seeds]
    label = "text + image scores"
    runs["late-fusion"] = {
        str(r["seed"]): {
            "amp": runs["text"][str(r["seed"])]["amp"],
            "queries": {
                label: {
                    "full": r["full"],
                    "m100": r["m100"],
                    "val": val[str(r["seed"])][str(best)],
                }
            },
        }
        for r in pool.map(_fusion, jobs)
    }
    results["late_fusion"] = {
        "split": "val",
        "criterion": "mean over seeds of mean(R@1, R@5, R@10), val queries against val tiles",
        "text_variant": "text",
        "image_sweep": image_sweep,
        "image_variant": image,
        "weight_sweep": weight_sweep,
        "weight": best,
    }


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
        "--variants",
        nargs="*",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        metavar="NAME",
        help="variants to (re)run; none: only the late fusion of the runs kept",
    )
    parser.add_argument("--work", default="runs/bench")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    from planetloc.data.synth.generate import generate_world

    work = Path(args.work)
    started = time.perf_counter()
    generate_world(SynthConfig(), work / "world", workers=2)
    kept = _earlier(Path(args.out), args.steps, args.seeds, args.variants)
    earlier_render = earlier_results(Path(args.out), args.steps, []).get("render")
    results: dict[str, Any] = {
        "benchmark": "crossview",
        "world": "SynthConfig() default (512 x 128 street panoramas)",
        "steps": args.steps,
        "seeds": list(range(args.seeds)),
        "variants": [v for v in VARIANTS if v in kept or v in args.variants],
        # Nothing trains when no variant is asked: the earlier render rate stands.
        "render": earlier_render if earlier_render and not args.variants else _render_rate(work),
        "runs": kept,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }

    def save() -> None:
        results["seconds"] = round(time.perf_counter() - started, 1)
        results["summary"] = summarise(results)
        results["selection"] = select_weight(results)
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
        late_fusion(results, pool, args.steps, str(work), threads)
        save()
    print(json.dumps(results["summary"], indent=1))
    return 0


def val_score(run: dict[str, Any], label: str) -> float | None:
    """mean(R@1, R@5, R@10) of one query of one run on val; None for runs scored before val."""
    from planetloc.eval.selection import val_criterion  # here: the parent stays torch-free

    val = run["queries"][label].get("val")
    return None if val is None else val_criterion(val)


def select_weight(results: dict[str, Any]) -> dict[str, Any]:
    """The street-loss weight and negatives chosen on val among the joint variants that have
    run on every seed (projection query), with the sweep; test numbers are only read
    afterwards."""
    seeds = [str(s) for s in results["seeds"]]
    sweep = []
    for name, settings in JOINT_SETTINGS.items():
        runs = results["runs"].get(name, {})
        scores = [val_score(runs[s], "projection") if s in runs else None for s in seeds]
        if None in scores:
            continue  # not run, or run before val was scored: not a candidate
        sweep.append({"variant": name, **settings, "val_score": float(np.mean(scores))})
    chosen = max(sweep, key=lambda e: e["val_score"])["variant"] if sweep else None
    return {
        "split": "val",
        "criterion": "mean over seeds of mean(R@1, R@5, R@10), projection query, val queries "
        "against val tiles",
        "sweep": sweep,
        "chosen": chosen,
    }


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
