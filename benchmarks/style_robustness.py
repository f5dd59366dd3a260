"""Robustness to an unseen description style, with the method chosen on val.

SynthCORE's ``texting`` style is never trained on and read only at test. To choose a method
for it without reading it, a second style is held out of training as well: ``chatty``, the
one seen style in an informal register (``exclude_styles``; a sample written in it reads
another of its phrasings). Val queries read in ``chatty`` then ask on val what ``texting``
asks on test. Arms, each ``synthcore.py``'s chosen PLANET recipe (its val lambda and steps)
reading paraphrases of the four trained styles (``alt_text_prob`` 0.5):

* ``base``: the texts as written;
* ``informal``: each read text replaced by its informal-register rewrite
  (``planetloc.data.informal``) with probability 0.3. Its operations are generic, but were
  chosen knowing how ``texting`` writes.

Val is the val queries against the val tiles only (no distractors, unlike test), so its R@10
is higher than test's; it only ranks the arms.

Selection, on val only: the arm with the higher val R@10 of the val queries read in
``chatty`` (global embedding, mean over seeds). Test, for both arms: every test query in each
of the six styles, global embedding and re-ranked (each run's val alpha). Reported: R@10 per
style with 95% bootstrap intervals over seeds and queries; the share of the four trained
styles' mean R@10 that ``texting`` (and ``chatty``) keeps, with paired intervals (the same
queries in every style); and ``informal - base`` paired over seeds and queries.

    .venv/bin/python benchmarks/style_robustness.py [--seeds 5] [--parallel 2]

Needs ``synthcore.py``'s results (lambda, steps) and its default world (made if missing).
Finished runs are reused, so an interrupted benchmark resumes; the results JSON is written
after every training and evaluation.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from planetloc.atomic import write_text
from planetloc.data import informal as rewrite
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

RESULTS = Path(__file__).parent / "results" / "style_robustness.json"
VAL_STYLE = "chatty"  # held out of training; val reads it to choose the arm
TRAINED = [s for s in STYLES if s not in (HELD_OUT_STYLE, VAL_STYLE)]
UNSEEN = (VAL_STYLE, HELD_OUT_STYLE)
INFORMAL_PROB = 0.3


def code_hash(path: Path) -> str:
    """A module's code without its docstrings and comments: a changed rule changes it, a
    reworded docstring does not. (``ast.dump`` differs between Python versions; the project
    pins one.)"""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    documented = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    for node in ast.walk(tree):
        if isinstance(node, documented) and ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:8]


# The rewrite's rules: runs and results made with other rules are never reused.
RULES = code_hash(Path(rewrite.__file__))
ARMS: dict[str, dict[str, Any]] = {
    "base": {"alt_text_prob": 0.5, "exclude_styles": [VAL_STYLE]},
    "informal": {
        "alt_text_prob": 0.5,
        "exclude_styles": [VAL_STYLE],
        "informal_prob": INFORMAL_PROB,
    },
}


def _val_styles(args: tuple[str, str, list[str], float, int]) -> dict[str, Any]:
    """A run's val queries (against the val tiles) read in each style, both scorings."""
    ckpt, data, styles, alpha, threads = args
    import torch

    torch.set_num_threads(threads)
    from planetloc.data.table import read_table
    from planetloc.eval.evaluate import encode_gallery_in_memory, encode_queries, rank_set
    from planetloc.eval.protocols import EvalSet
    from planetloc.model.inference import Encoder
    from planetloc.workflows.models import trained

    model = trained(ckpt).model
    table = read_table(data, splits=("val",), with_meta=True, meta_keys=("alt_texts", "style"))
    rows = np.arange(len(table))
    val = EvalSet("val", table, rows, rows)
    encoder = Encoder(model)
    gallery = encode_gallery_in_memory(encoder, table, rows)
    out = {}
    for style in styles:
        queries, _ = encode_queries(
            encoder,
            table,
            rows,
            query=model.cfg.query,
            joint_score=model.cfg.joint_score,
            text_style=style,
        )
        for scoring, a in (("global", 0.0), ("reranked", alpha)):
            ranking = rank_set(queries, gallery, val, m=None, rerank_alpha=a)
            out[f"{style}-{scoring}"] = {"ranks": ranking.ranks.tolist()}
    return out


def _shares(runs: dict[str, Any], seeds: list[int], split: str, styles: list[str]) -> dict:
    """Per scoring: R@10 of every style, the trained styles' mean, and the share each unseen
    style keeps of that mean (paired over the same queries); also the hits, for differences."""
    out: dict[str, Any] = {}
    for scoring in ("global", "reranked"):
        ranks = {
            style: [runs[str(s)][split][f"{style}-{scoring}"]["ranks"] for s in seeds]
            for style in styles
        }
        hits = {style: _hits(ranks[style], 10) for style in styles}
        seen = [np.mean([hits[y][i] for y in TRAINED], axis=0) for i in range(len(seeds))]
        hits["trained styles"] = seen
        out[scoring] = {
            "R@10": {style: bootstrap(ranks[style], 10) for style in styles},
            "trained styles R@10": _interval(*_two_level(seen, 2000, 0)),
            "kept": {u: kept_hits(hits[u], seen) for u in UNSEEN if u in styles},
            "_hits": hits,
        }
    return out


def summarise(runs: dict[str, dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """Val selection, then per arm the val and test shares, and informal - base on test."""
    val_styles = [*TRAINED, VAL_STYLE]
    out: dict[str, Any] = {"val": {}, "test": {}}
    for arm in ARMS:
        out["val"][arm] = _shares(runs[arm], seeds, "val", val_styles)
        out["test"][arm] = _shares(runs[arm], seeds, "test", list(STYLES))
    sweep = {arm: out["val"][arm]["global"]["R@10"][VAL_STYLE]["mean"] for arm in ARMS}
    chosen = max(ARMS, key=lambda arm: (sweep[arm], arm == "base"))
    out["selection"] = {
        "split": "val",
        "criterion": f"mean over seeds of val R@10, val queries read in {VAL_STYLE} "
        "(held out of training), global embedding",
        "sweep": sweep,
        "arm": chosen,
    }
    out["informal - base (test)"] = {
        scoring: {
            what: paired_hits(
                out["test"]["informal"][scoring]["_hits"][what],
                out["test"]["base"][scoring]["_hits"][what],
            )
            for what in (HELD_OUT_STYLE, VAL_STYLE, "trained styles")
        }
        for scoring in ("global", "reranked")
    }
    for split in ("val", "test"):
        for arm in ARMS:
            for scoring in ("global", "reranked"):
                del out[split][arm][scoring]["_hits"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="default: synthcore.py's steps")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--work", default="runs/bench")
    parser.add_argument("--synthcore", default=str(SYNTHCORE), help="synthcore.py's results")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    work = Path(args.work)
    started = time.perf_counter()
    core = json.loads(Path(args.synthcore).read_text(encoding="utf-8"))
    lam, steps = core["selection"]["lambda"], args.steps or core["steps"]
    seeds = list(range(args.seeds))
    threads = max(1, (os.cpu_count() or 2) // args.parallel)
    results: dict[str, Any] = {
        "benchmark": "style_robustness",
        "recipe": f"planet-l{lam}+paraphrase",
        "backbone": core["backbone"],
        "steps": steps,
        "seeds": seeds,
        "held_out_style": HELD_OUT_STYLE,
        "val_style": VAL_STYLE,
        "trained_styles": TRAINED,
        "arms": ARMS,
        "informal_rules": RULES,
        "world": "SynthConfig() default",
        "runs": {arm: {} for arm in ARMS},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    try:
        earlier = json.loads(Path(args.out).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = {}
    same = ("recipe", "steps", "arms", "val_style", "informal_rules")
    if all(earlier.get(k) == results[k] for k in same):
        for arm in ARMS:
            results["runs"][arm] = {
                s: run for s, run in earlier["runs"][arm].items() if int(s) in seeds
            }

    def save() -> None:
        results["seconds"] = round(time.perf_counter() - started, 1)
        write_text(args.out, json.dumps(results, indent=1) + "\n")

    from planetloc.data.synth.generate import generate_world

    generate_world(WORLD, work / "world", workers=2)
    pool = ProcessPoolExecutor(max_workers=args.parallel)
    # 1. Train. The arms alternate so that each arm's text cache is computed once at the start
    # (the informal arm's holds the base arm's texts, but they start together).
    pending = [
        (s, arm)
        for s in seeds
        for arm in ("informal", "base")
        if str(s) not in results["runs"][arm]
    ]
    todo = [
        (
            f"planet-l{lam}-no{VAL_STYLE}-{RULES}-{arm}",
            "planet",
            {"lambda_phy": lam, **ARMS[arm]},
            s,
            steps,
            str(work),
            threads,
        )
        for s, arm in pending
    ]
    for (_, arm), run in zip(pending, pool.map(_train, todo), strict=True):
        alpha = float((run["selection"] or {}).get("alpha", 0.0))
        results["runs"][arm][str(run["seed"])] = {"train": run, "alpha": alpha}
        print(f"trained {arm} seed {run['seed']} in {run['seconds']} s", flush=True)
        save()
    # 2. Val in the trained styles and the val style; test in all six styles.
    jobs, keys = [], []
    for arm in ARMS:
        for s in seeds:
            run = results["runs"][arm][str(s)]
            if "val" not in run:
                val_job = (
                    run["train"]["checkpoint"],
                    str(work / "world"),
                    [*TRAINED, VAL_STYLE],
                    run["alpha"],
                    threads,
                )
                jobs.append((_val_styles, val_job))
                keys.append((arm, s, "val"))
            if "test" not in run:
                out = work / "eval" / "style-robustness" / f"{arm}-seed{s}"
                test_job = (
                    run["train"]["checkpoint"],
                    str(work / "world"),
                    str(out),
                    style_labels(run["alpha"]),
                    threads,
                )
                jobs.append((_evaluate, test_job))
                keys.append((arm, s, "test"))
    futures = [pool.submit(fn, job) for fn, job in jobs]
    for (arm, s, split), future in zip(keys, futures, strict=True):
        results["runs"][arm][str(s)][split] = future.result()
        print(f"evaluated {arm} seed {s} on {split}", flush=True)
        save()
    pool.shutdown()
    results["summary"] = summarise(results["runs"], seeds)
    save()
    summary = results["summary"]
    print(f"chosen on val: {summary['selection']['arm']}  {summary['selection']['sweep']}")
    for arm in ARMS:
        for scoring in ("global", "reranked"):
            row = summary["test"][arm][scoring]
            k = row["kept"][HELD_OUT_STYLE]
            print(
                f"{arm:9s} {scoring:8s} trained {row['trained styles R@10']['mean']:.1f}  "
                f"{HELD_OUT_STYLE} {row['R@10'][HELD_OUT_STYLE]['mean']:.1f}  kept "
                f"{k['mean']:.2f} [{k['low']:.2f}, {k['high']:.2f}]"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
