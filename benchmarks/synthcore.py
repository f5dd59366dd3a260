"""Does L_phy help? PLANET, its recipes and baselines on SynthCORE: every setting chosen on
val, test evaluated once with the chosen settings, bootstrap intervals over queries and seeds.

Worlds: ``world``, the default SynthCORE world (24 regions x 200 described samples + 20
distractors, descriptions in five training styles, a sixth style held out), and
``world-dense``: the same described samples with 600 gallery tiles per region anywhere in the
region, where the 100 tiles nearest a query are its neighbourhood rather than its region.

Runs (same trainer, data and steps; backbone minilm-cnn; seeds 0..N-1):

* ``itc-77``: image-text contrastive loss, text cut at 77 tokens;
* ``itc-long``: the same, full 248 tokens (PLANET with lambda = 0);
* ``planet`` at lambda 0.25, 0.5, 1.0 (the sweep, on the first ``--sweep-seeds`` seeds);
  lambda* is the one whose mean val score (mean of R@1, R@5, R@10, val queries against val
  tiles, final step) over those seeds is best, and is then trained on every seed;
* ``planet+paraphrase``: planet at lambda* reading another training style's phrasing of the
  same scene half of the time;
* ``planet+paraphrase+tokdrop0.3``: the same with 30% of the text tokens hidden from the
  heads while training instead of the default 10% (a describer who leaves cues out, as the
  held-out style does), one documented experiment on the phrasing gap, not a selection.

Each run chooses its re-ranking weight alpha on val when it finishes. Test numbers are
reported for the named recipes and for planet at lambda* only, each as its global embedding
(alpha 0) and re-ranked (its val alpha), on both worlds and both protocols, and for the
held-out description style. Intervals: 95% bootstrap over seeds and, within each, queries.

    .venv/bin/python benchmarks/synthcore.py [--seeds 5] [--sweep-seeds 5] [--steps 500]
        [--parallel 2]

Runs are reused when finished, so an interrupted benchmark resumes; the results JSON is
written after every evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from earlier import earlier_results
from planetloc.atomic import write_text
from planetloc.data.synth.config import SynthConfig
from planetloc.data.synth.describe import HELD_OUT_STYLE, STYLES

WORLD = SynthConfig()
DENSE = replace(WORLD, distractors=600, gallery_on_streets=False, gallery_spacing_m=20.0)
LAMBDAS = (0.25, 0.5, 1.0)
RESULTS = Path(__file__).parent / "results" / "synthcore.json"


# Variants of planet trained at the chosen lambda, each reading paraphrases (so
# ``--no-paraphrase`` leaves them all out).
AT_LAMBDA: dict[str, dict[str, Any]] = {
    "planet+paraphrase": {"alt_text_prob": 0.5},
    "planet+paraphrase+tokdrop0.3": {"alt_text_prob": 0.5, "model.token_dropout": 0.3},
}


def recipes(best_lambda: float | None) -> dict[str, tuple[str, dict[str, Any]]]:
    out: dict[str, tuple[str, dict[str, Any]]] = {
        "itc-77": ("itc-77", {}),
        "itc-long": ("itc-long", {}),
    }
    for lam in LAMBDAS:
        out[f"planet-l{lam}"] = ("planet", {"lambda_phy": lam})
    if best_lambda is not None:
        for name, extra in AT_LAMBDA.items():
            out[name] = ("planet", {"lambda_phy": best_lambda, **extra})
    return out


def _train(args: tuple[str, str, dict[str, Any], int, int, str, int]) -> dict[str, Any]:
    """Train one run in its own process (one thread: two runs share the two cores)."""
    name, method, extra, seed, steps, work, threads = args
    import torch

    torch.set_num_threads(threads)
    from planetloc.model.checkpoint import read_checkpoint
    from planetloc.train.config import load_config
    from planetloc.workflows.runs import train_or_reuse

    out = Path(work) / f"{name}-seed{seed}"
    cfg = load_config(
        method=method,
        overrides={
            "data": str(Path(work) / "world"),
            "out": str(out),
            "steps": steps,
            "seed": seed,
            "eval_every": max(50, steps // 8),
            "workers": 1,
            **extra,
        },
    )
    started = time.perf_counter()
    ckpt = train_or_reuse(cfg, progress=False)
    info = read_checkpoint(ckpt)
    curve = [
        json.loads(line)
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if '"val_R@1"' in line
    ]
    return {
        "name": name,
        "seed": seed,
        "checkpoint": str(ckpt),
        "seconds": round(time.perf_counter() - started, 1),
        "val_curve": curve,
        "val_final": curve[-1] if curve else {},
        "selection": info.extra.get("selection"),
    }


def _evaluate(args: tuple[str, str, str, list[tuple[str, float, str | None]], int]) -> dict:
    """A run's test evaluations on one world, in its own process: one gallery index, then
    each (label, alpha, style) in turn."""
    ckpt, data, out, labels, threads = args
    import torch

    torch.set_num_threads(threads)
    from planetloc.workflows.evaluation import run_evaluation
    from planetloc.workflows.models import trained

    loaded = trained(ckpt)
    reports = {}
    for label, alpha, style in labels:
        report = run_evaluation(
            data,
            out,
            name=label,
            loaded=loaded,
            rerank_alpha=alpha,
            text_style=style,
            progress=False,
        )
        world = report["sets"]["world"]
        reports[label] = {
            "full": world["full"],
            "m100": world["m100"],
            "unseen": report["sets"].get("unseen", {}).get("full"),
            "ranks": [e["rank"] for e in report["world_errors"]],
            "ranks_m": [e["rank_m"] for e in report["world_errors"]],
            "truncated_fraction": report["truncated_fraction"],
        }
    return reports


def _earlier(path: Path, steps: int, seeds: list[int]) -> dict[str, Any]:
    """Results of an earlier run of this benchmark with the same steps, kept for the seeds
    asked for now (to resume, or to add seeds without training or evaluating again what is
    already measured)."""
    old = earlier_results(path, steps, seeds)
    # The zero-shot reference is an average over seeds: reused only for the same seeds.
    if old.get("seeds") != seeds:
        old.pop("references", None)
    return old


def references(work: Path, seeds: list[int], threads: int) -> dict[str, Any]:
    """Chance, the text-to-signature baseline and the untrained model on the world test."""
    import torch

    from planetloc.baselines.evaluate import evaluate_text_to_signature
    from planetloc.workflows.evaluation import run_evaluation
    from planetloc.workflows.models import zero_shot

    torch.set_num_threads(2 * threads)
    data = str(work / "world")
    baseline = evaluate_text_to_signature(data)["sets"]["world"]
    ranks = []
    for seed in seeds:
        report = run_evaluation(
            data,
            str(work / "eval" / f"zero-shot-seed{seed}"),
            name="zero-shot",
            loaded=zero_shot("minilm-cnn", data, seed=seed),
            rerank_alpha=0.0,
            progress=False,
        )
        ranks.append([e["rank"] for e in report["world_errors"]])
    gallery = baseline["gallery"]
    return {
        "gallery": gallery,
        "queries": baseline["queries"],
        "chance": {f"R@{k}": 100.0 * k / gallery for k in (1, 5, 10)},
        "text_to_signature": baseline["baseline"],
        "zero_shot": {f"R@{k}": bootstrap(ranks, k) for k in (1, 5, 10)},
    }


def val_score(run: dict[str, Any]) -> float:
    from planetloc.eval.selection import val_criterion  # here: the parent stays torch-free

    return val_criterion(run["val_final"], prefix="val_")


def _resamples(sizes: list[int], draws: int, seed: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    """Two-level bootstrap draws: seeds with replacement, then each chosen seed's queries."""
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        yield [
            (i, rng.integers(0, sizes[i], sizes[i]))
            for i in rng.integers(0, len(sizes), len(sizes))
        ]


def _hits(ranks: list[list[int]], k: int) -> list[np.ndarray]:
    return [((np.asarray(r) >= 0) & (np.asarray(r) < k)).astype(float) for r in ranks]


def _interval(point: float, draws: np.ndarray, scale: float = 100.0) -> dict[str, float]:
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {"mean": scale * point, "low": scale * float(lo), "high": scale * float(hi)}


def _two_level(arrays: list[np.ndarray], draws: int, seed: int) -> tuple[float, np.ndarray]:
    """Mean over seeds of each seed's mean, and that mean for every bootstrap draw."""
    means = np.array(
        [
            np.mean([arrays[i][q].mean() for i, q in sample])
            for sample in _resamples([len(a) for a in arrays], draws, seed)
        ]
    )
    return float(np.mean([a.mean() for a in arrays])), means


def bootstrap(
    ranks: list[list[int]], k: int, *, draws: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Mean R@k over seeds and its 95% interval: resample seeds, then queries within each."""
    return {**_interval(*_two_level(_hits(ranks, k), draws, seed)), "seeds": len(ranks)}


def paired(
    a: list[list[int]], b: list[list[int]], k: int, *, draws: int = 2000, seed: int = 0
) -> dict[str, float]:
    """R@k of ``a`` minus ``b`` (same queries, same seeds) with a paired 95% interval."""
    return paired_hits(_hits(a, k), _hits(b, k), draws=draws, seed=seed)


def paired_hits(
    a: list[np.ndarray], b: list[np.ndarray], *, draws: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Hit rate ``a`` minus ``b`` per seed (same queries), with a paired 95% interval."""
    diff = [x - y for x, y in zip(a, b, strict=True)]
    return _interval(*_two_level(diff, draws, seed))


def kept_hits(
    u: list[np.ndarray], v: list[np.ndarray], *, draws: int = 2000, seed: int = 0
) -> dict[str, float]:
    """The share of the seen style's hit rate ``v`` that the held-out style's ``u`` keeps
    (per seed, the same queries in both), with a paired 95% interval; a draw with no
    seen-style hit is left out."""
    ratios = []
    for sample in _resamples([len(h) for h in v], draws, seed):
        den = np.mean([v[i][q].mean() for i, q in sample])
        if den > 0:
            ratios.append(np.mean([u[i][q].mean() for i, q in sample]) / den)
    point = float(np.mean([h.mean() for h in u]) / np.mean([h.mean() for h in v]))
    return _interval(point, np.asarray(ratios), scale=1.0)


def style_labels(alpha: float) -> list[tuple[str, float, str]]:
    """Evaluation labels reading every test query in each description style, scored by the
    global embedding and re-ranked at ``alpha``: (label, alpha, style)."""
    return [
        (f"{style}-{scoring}", a, style)
        for style in STYLES
        for scoring, a in (("global", 0.0), ("reranked", alpha))
    ]


def _worlds(work: Path) -> None:
    from planetloc.data.manifest import read_manifest
    from planetloc.data.synth.generate import generate_world

    a = read_manifest(generate_world(WORLD, work / "world", workers=2), check_images=False)
    b = read_manifest(generate_world(DENSE, work / "world-dense", workers=2), check_images=False)
    described = {s.id: s.text for s in a.samples if s.split != "gallery"}
    same = {s.id: s.text for s in b.samples if s.split != "gallery"}
    if described != same:
        raise SystemExit("the dense world must hold exactly the default world's described samples")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument(
        "--sweep-seeds", type=int, default=5, help="seeds of the lambda values not chosen"
    )
    parser.add_argument(
        "--no-paraphrase", action="store_true", help="leave out the recipes that read paraphrases"
    )
    parser.add_argument("--work", default="runs/bench")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    work = Path(args.work)
    started = time.perf_counter()
    _worlds(work)
    seeds = list(range(args.seeds))
    threads = max(1, (os.cpu_count() or 2) // args.parallel)
    results: dict[str, Any] = {
        "benchmark": "synthcore",
        "worlds": {
            "world": "SynthConfig() default",
            "world-dense": "default + 600 gallery tiles/region",
        },
        "backbone": "minilm-cnn",
        "steps": args.steps,
        "seeds": seeds,
        "lambdas": list(LAMBDAS),
        "held_out_style": HELD_OUT_STYLE,
        "sweep_seeds": args.sweep_seeds,
        "left_out": list(AT_LAMBDA) if args.no_paraphrase else [],
        "runs": {},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    earlier = _earlier(Path(args.out), args.steps, seeds)
    results["runs"] = earlier.get("runs", {})

    def save() -> None:
        results["seconds"] = round(time.perf_counter() - started, 1)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(results, indent=1) + "\n")

    pool = ProcessPoolExecutor(max_workers=args.parallel)

    def train_all(jobs: list[tuple]) -> None:
        todo = [j for j in jobs if str(j[3]) not in results["runs"].get(j[0], {})]
        for run in pool.map(_train, todo):
            results["runs"].setdefault(run["name"], {}).setdefault(str(run["seed"]), {})[
                "train"
            ] = run
            print(f"trained {run['name']} seed {run['seed']} in {run['seconds']} s", flush=True)
            save()

    # 1. The recipes on every seed and the lambda sweep on the first sweep seeds; lambda is
    # chosen on val, then trained on the remaining seeds.
    sweep_seeds = seeds[: args.sweep_seeds]
    train_all(
        [
            (name, method, extra, seed, args.steps, str(work), threads)
            for name, (method, extra) in recipes(None).items()
            for seed in (sweep_seeds if name.startswith("planet-l") else seeds)
        ]
    )
    sweep = {
        lam: float(
            np.mean(
                [val_score(results["runs"][f"planet-l{lam}"][str(s)]["train"]) for s in sweep_seeds]
            )
        )
        for lam in LAMBDAS
    }
    best = max(LAMBDAS, key=lambda lam: (sweep[lam], -lam))
    results["selection"] = {
        "split": "val",
        "criterion": "mean over seeds of the final mean(R@1, R@5, R@10), val queries vs val tiles",
        "seeds": sweep_seeds,
        "sweep": {str(k): v for k, v in sweep.items()},
        "itc-long (lambda 0)": float(
            np.mean([val_score(results["runs"]["itc-long"][str(s)]["train"]) for s in sweep_seeds])
        ),
        "lambda": best,
    }
    save()
    # 2. The chosen lambda on every seed, and the variants at the chosen lambda.
    variants = [] if args.no_paraphrase else list(AT_LAMBDA)
    chosen = recipes(best)
    train_all(
        [
            (name, *chosen[name], s, args.steps, str(work), threads)
            for name in [f"planet-l{best}", *variants]
            for s in seeds
        ]
    )
    # 3. Test, once, for the reported recipes: global and re-ranked, both worlds, held-out style.
    reported = ["itc-77", "itc-long", f"planet-l{best}", *variants]
    jobs = []
    for name in reported:
        for s in seeds:
            run = results["runs"][name][str(s)]["train"]
            alpha = float((run["selection"] or {}).get("alpha", 0.0))
            base = work / "eval" / f"{name}-seed{s}"
            jobs.append(
                (
                    run["checkpoint"],
                    str(work / "world"),
                    str(base / "world"),
                    [
                        ("global", 0.0, None),
                        ("reranked", alpha, None),
                        ("style-global", 0.0, HELD_OUT_STYLE),
                        ("style-reranked", alpha, HELD_OUT_STYLE),
                    ],
                    threads,
                )
            )
            jobs.append(
                (
                    run["checkpoint"],
                    str(work / "world-dense"),
                    str(base / "world-dense"),
                    [
                        ("dense-global", 0.0, None),
                        ("dense-reranked", alpha, None),
                    ],
                    threads,
                )
            )
    keys = [(name, s) for name in reported for s in seeds for _ in range(2)]
    todo = [
        (key, job)
        for key, job in zip(keys, jobs, strict=True)
        if not all(label in results["runs"][key[0]][str(key[1])] for label, _, _ in job[3])
    ]
    for (name, s), reports in zip(
        [k for k, _ in todo], pool.map(_evaluate, [j for _, j in todo]), strict=True
    ):
        results["runs"][name][str(s)].update(reports)
        save()
    # 4. References: chance, the text-to-signature baseline, the untrained model.
    if "references" not in earlier:
        results["references"] = references(work, seeds, threads)
    else:
        results["references"] = earlier["references"]
    save()
    pool.shutdown()
    results["summary"] = summarise(results, reported, seeds)
    save()
    print(json.dumps(results["summary"], indent=1))
    return 0


def summarise(results: dict[str, Any], reported: list[str], seeds: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in reported:
        runs = [results["runs"][name][str(s)] for s in seeds]
        row: dict[str, Any] = {}
        for label in (
            "global",
            "reranked",
            "dense-global",
            "dense-reranked",
            "style-global",
            "style-reranked",
        ):
            ranks = [r[label]["ranks"] for r in runs]
            ranks_m = [r[label]["ranks_m"] for r in runs]
            row[label] = {
                "R@1": bootstrap(ranks, 1),
                "R@5": bootstrap(ranks, 5),
                "R@10": bootstrap(ranks, 10),
                "m100 R@1": bootstrap(ranks_m, 1),
                "m100 R@10": bootstrap(ranks_m, 10),
            }
        row["kept"] = {
            label: kept_hits(
                _hits([r[f"style-{label}"]["ranks"] for r in runs], 10),
                _hits([r[label]["ranks"] for r in runs], 10),
            )
            for label in ("global", "reranked")
        }
        row["alpha"] = [float((r["train"]["selection"] or {}).get("alpha", 0.0)) for r in runs]
        out[name] = row
    planet = f"planet-l{results['selection']['lambda']}"
    a = [results["runs"][planet][str(s)]["global"]["ranks"] for s in seeds]
    b = [results["runs"]["itc-long"][str(s)]["global"]["ranks"] for s in seeds]
    out["L_phy effect (planet - itc-long, global embedding)"] = {
        f"R@{k}": paired(a, b, k) for k in (1, 5, 10)
    }
    ar = [results["runs"][planet][str(s)]["reranked"]["ranks"] for s in seeds]
    out["L_phy effect (planet re-ranked - itc-long)"] = {
        f"R@{k}": paired(ar, b, k) for k in (1, 5, 10)
    }
    # The phrasing experiment against the recipe it changes one setting of.
    drop, base = "planet+paraphrase+tokdrop0.3", "planet+paraphrase"
    if drop in reported and base in reported:
        for label, text in PHRASING_LABELS.items():
            a = [results["runs"][drop][str(s)][label]["ranks"] for s in seeds]
            b = [results["runs"][base][str(s)][label]["ranks"] for s in seeds]
            out[f"phrasing: token dropout 0.3 - 0.1 ({base}), {text}"] = {
                f"R@{k}": paired(a, b, k) for k in (1, 5, 10)
            }
    return out


PHRASING_LABELS = {
    "style-global": "held-out style, global embedding",
    "style-reranked": "held-out style, re-ranked",
    "global": "seen styles, global embedding",
    "reranked": "seen styles, re-ranked",
}


if __name__ == "__main__":
    raise SystemExit(main())
