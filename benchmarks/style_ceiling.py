"""How much of the held-out style's gap is the style, and how much what its texts leave out?

The held-out description style (``texting``) tells fewer cues than the training styles (it
often skips what is behind, the compass, facades and shadows), so even a model that had been
trained on it could not find its texts as often. This benchmark measures that ceiling:

* ``held-out``: the chosen PLANET recipe of ``synthcore.py`` (planet at its val-chosen
  lambda, the runs that benchmark trained on the default world, where ``texting`` is never
  trained on);
* ``all-styles``: the same recipe, steps and seeds trained on ``world-allstyles``, the same
  world (same scenes, samples and splits) generated with ``train_all_styles``: training
  texts are drawn from all six styles, ``texting`` included.

Every test query is then read in each of the six styles (its own text where it is written
in that style, else its phrasing in ``meta.alt_texts``), global embedding and re-ranked (each
run's val alpha). Reported: R@10 per style with 95% bootstrap intervals over seeds and
queries, and the share of the other five styles' mean R@10 that ``texting`` keeps, with a
paired interval (the same queries in every style), and what training on ``texting``
changes, paired over seeds and queries: its R@10 and the other styles' mean (a share can
rise because the other styles lose). This is what one recipe at one budget reaches with
``texting`` a sixth of its training texts, not a ceiling of what its texts could give.

    .venv/bin/python benchmarks/style_ceiling.py [--parallel 2]

Needs ``synthcore.py`` to have run (its chosen lambda, steps, seeds and checkpoints). Runs
are reused when finished, so an interrupted benchmark resumes; the results JSON is written
after every evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from planetloc.atomic import write_text
from planetloc.data.synth.describe import HELD_OUT_STYLE, STYLES
from synthcore import RESULTS as SYNTHCORE
from synthcore import (
    WORLD,
    _evaluate,
    _hits,
    _interval,
    _train,
    _two_level,
    bootstrap,
    kept_hits,
    paired_hits,
    style_labels,
)

ALL_STYLES = replace(WORLD, train_all_styles=True)
RESULTS = Path(__file__).parent / "results" / "style_ceiling.json"
SETTINGS = ("held-out", "all-styles")


def _worlds(work: Path) -> None:
    """Generate ``world-allstyles`` and check that it asks the default world's test queries:
    the same samples, each with the same text in every style."""
    from planetloc.data.manifest import read_manifest
    from planetloc.data.synth.generate import generate_world

    def phrasings(manifest_path: Path) -> dict[str, dict[str, str]]:
        return {
            s.id: {s.meta["style"]: s.text, **s.meta["alt_texts"]}
            for s in read_manifest(manifest_path, check_images=False).samples
            if s.split in ("test", "test_unseen")
        }

    held = phrasings(generate_world(WORLD, work / "world", workers=2))
    every = phrasings(generate_world(ALL_STYLES, work / "world-allstyles", workers=2))
    if held != every:
        raise SystemExit("world-allstyles must ask the default world's test queries, word for word")


def summarise(runs: dict[str, dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Per setting and scoring: R@10 of every style, and the share ``texting`` keeps of the
    other styles' mean R@10 (paired: the same queries read in every style); per scoring, what
    training on ``texting`` changes, paired over the same seeds and queries: its R@10 and the
    other styles' mean R@10 (a share can rise because the other styles lost)."""
    others = [s for s in STYLES if s != HELD_OUT_STYLE]
    out: dict[str, Any] = {setting: {} for setting in SETTINGS}
    hits: dict[tuple[str, str], tuple[list[np.ndarray], list[np.ndarray]]] = {}
    for setting in SETTINGS:
        row = out[setting]
        for scoring in ("global", "reranked"):
            ranks = {
                style: [runs[setting][str(s)][f"{style}-{scoring}"]["ranks"] for s in seeds]
                for style in STYLES
            }
            per_style = {style: _hits(ranks[style], 10) for style in STYLES}
            seen = [np.mean([per_style[y][i] for y in others], axis=0) for i in range(len(seeds))]
            hits[setting, scoring] = (per_style[HELD_OUT_STYLE], seen)
            row[scoring] = {
                "R@10": {style: bootstrap(ranks[style], 10) for style in STYLES},
                "other styles R@10": _interval(*_two_level(seen, 2000, 0)),
                "kept": kept_hits(*hits[setting, scoring]),
            }
        row["alpha"] = [runs[setting][str(s)]["alpha"] for s in seeds]
    out["trained - held out"] = {
        scoring: {
            what: paired_hits(hits["all-styles", scoring][i], hits["held-out", scoring][i])
            for i, what in enumerate((f"{HELD_OUT_STYLE} R@10", "other styles R@10"))
        }
        for scoring in ("global", "reranked")
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--work", default="runs/bench")
    parser.add_argument("--synthcore", default=str(SYNTHCORE), help="synthcore.py's results")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    work = Path(args.work)
    started = time.perf_counter()
    core = json.loads(Path(args.synthcore).read_text(encoding="utf-8"))
    lam, steps, seeds = core["selection"]["lambda"], core["steps"], core["seeds"]
    recipe = f"planet-l{lam}"
    threads = max(1, (os.cpu_count() or 2) // args.parallel)
    results: dict[str, Any] = {
        "benchmark": "style_ceiling",
        "recipe": recipe,
        "backbone": core["backbone"],
        "steps": steps,
        "seeds": seeds,
        "held_out_style": HELD_OUT_STYLE,
        "worlds": {
            "held-out": "world: SynthConfig() default, texting never trained (synthcore's runs)",
            "all-styles": "world-allstyles: the same world with train_all_styles",
        },
        "runs": {setting: {} for setting in SETTINGS},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    # The held-out runs are synthcore's: earlier results are reused only while they still are.
    trained = {str(s): core["runs"][recipe][str(s)]["train"] for s in seeds}
    results["held_out_checkpoints"] = {s: run["checkpoint"] for s, run in trained.items()}
    try:
        earlier = json.loads(Path(args.out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = {}
    same = ("recipe", "steps", "seeds", "held_out_checkpoints")
    if all(earlier.get(key) == results[key] for key in same):
        results["runs"] = earlier["runs"]

    def save() -> None:
        results["seconds"] = round(time.perf_counter() - started, 1)
        write_text(args.out, json.dumps(results, indent=1) + "\n")

    _worlds(work)
    pool = ProcessPoolExecutor(max_workers=args.parallel)
    # 1. The recipe on the all-styles world, every seed (the held-out runs are synthcore's).
    name = f"{recipe}-allstyles"
    todo = [
        (
            name,
            "planet",
            {"lambda_phy": lam, "data": str(work / "world-allstyles")},
            s,
            steps,
            str(work),
            threads,
        )
        for s in seeds
        if str(s) not in results["runs"]["all-styles"]
    ]
    for run in pool.map(_train, todo):
        alpha = float((run["selection"] or {}).get("alpha", 0.0))
        results["runs"]["all-styles"][str(run["seed"])] = {"train": run, "alpha": alpha}
        print(f"trained {name} seed {run['seed']} in {run['seconds']} s", flush=True)
        save()
    for s in seeds:
        if str(s) not in results["runs"]["held-out"]:
            alpha = float((trained[str(s)]["selection"] or {}).get("alpha", 0.0))
            results["runs"]["held-out"][str(s)] = {"train": trained[str(s)], "alpha": alpha}
    # 2. Every test query in every style, both scorings, both settings.
    worlds = {"held-out": work / "world", "all-styles": work / "world-allstyles"}
    jobs, keys = [], []
    for setting in SETTINGS:
        for s in seeds:
            run = results["runs"][setting][str(s)]
            labels = style_labels(run["alpha"])
            if all(label in run for label, _, _ in labels):
                continue
            out = work / "eval" / "style-ceiling" / f"{setting}-seed{s}"
            jobs.append(
                (run["train"]["checkpoint"], str(worlds[setting]), str(out), labels, threads)
            )
            keys.append((setting, s))
    for (setting, s), reports in zip(keys, pool.map(_evaluate, jobs), strict=True):
        results["runs"][setting][str(s)].update(reports)
        print(f"evaluated {setting} seed {s}", flush=True)
        save()
    pool.shutdown()
    results["summary"] = summarise(results["runs"], seeds)
    save()
    for setting in SETTINGS:
        for scoring in ("global", "reranked"):
            row = results["summary"][setting][scoring]
            styles = "  ".join(f"{k} {v['mean']:.1f}" for k, v in row["R@10"].items())
            k = row["kept"]
            print(
                f"{setting:10s} {scoring:8s} R@10 {styles}  kept {k['mean']:.2f} "
                f"[{k['low']:.2f}, {k['high']:.2f}]"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
