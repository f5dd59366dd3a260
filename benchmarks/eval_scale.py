"""Evaluation at scale: SynthCORE-XL test queries against its ~1M-tile gallery, end to end.

Phases, each timed and its peak memory sampled every 0.2 s:

0. the world: ``preset_config("xl")`` (225 regions, ~100k described samples, ~1M gallery
   tiles in JPEG shards) generated or finished (a killed generation resumes per shard;
   about 2.9 core-hours by ``synth.py``'s estimate, and two workers are not twice as fast
   as one on every machine), or a smaller variant (``--regions``, ``--gallery``);
1. ``index``: reading the evaluation table and encoding every gallery tile into the index
   store that ``evaluate`` keeps (the same call evaluation makes, so it reuses it); an
   encoding stopped with SIGTERM records what it stored, and ``--reuse-index`` goes on from
   there: the phase's time is then the sum over the runs, its memory the largest of any;
2. ``evaluate``: ``run_evaluation`` as ``planetloc evaluate`` runs it: every evaluation set,
   the full-gallery and the m-nearest protocol (m = 100), report files; its index step now
   only verifies the stored shards (its cost is reported separately);
3. ``nearest``: the m-nearest candidate step alone (``nearest_candidates``) for the world set.

Memory: the gallery's embeddings are memory-mapped from the index store, so the resident set
grows by their size as they are read; reported are the embedding bytes, the growth of the
resident set, and the extra beyond the embeddings (and the anonymous-memory growth, which
leaves file-backed pages out but counts the FAISS copy read from the store). Target: the
extra is at most 4 GB. Baseline: the size of the full score matrix an unblocked evaluation
would allocate (world queries x gallery x 8 bytes).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/eval_scale.py \
        [--checkpoint runs/bench/planet-l0.25-seed0] [--world runs/bench/world-xl]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/eval_scale.py --smoke --checkpoint RUN \
        --out /tmp/eval_scale.json

Prints a table and writes benchmarks/results/eval_scale.json (after every phase).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from memwatch import GB, PeakMemory, folder_gb, free_disk_gb, machine
from planetloc.atomic import write_text
from planetloc.data.caches import CACHE_FOLDER
from planetloc.data.synth.config import preset_config
from planetloc.data.synth.generate import check_world, generate_world
from planetloc.data.synth.world_shards import SHARD_DIR
from planetloc.eval.evaluate import default_index_dir
from planetloc.eval.metrics import nearest_candidates
from planetloc.eval.protocols import evaluation_sets, evaluation_table
from planetloc.index.store import BuildOptions, build_index
from planetloc.model.inference import Encoder
from planetloc.workflows.evaluation import run_evaluation
from planetloc.workflows.models import trained

TARGET_EXTRA_GB = 4.0
MEMORY_KEYS = (
    "peak_rss_gb",
    "rss_growth_gb",
    "peak_anon_gb",
    "anon_growth_gb",
    "max_processes",
)


def memory_entry(mem: PeakMemory, seconds: float, embeddings_gb: float) -> dict[str, Any]:
    used = mem.report()
    return {
        "seconds": round(seconds, 1),
        **used,
        "embeddings_gb": round(embeddings_gb, 3),
        "extra_over_embeddings_gb": round(used["rss_growth_gb"] - embeddings_gb, 3),
    }


def encode_gallery(loaded: Any, world: Path, index_dir: Path, timings: dict[str, float]) -> None:
    """Phase 1 as evaluation runs it: the evaluation table, then the index store. The
    seconds spent reading the table go to ``timings`` as soon as they are known (a run
    stopped while encoding counts them out of its encoding time)."""
    start = time.perf_counter()
    table = evaluation_table(world)
    timings["read_table_s"] = time.perf_counter() - start
    build_index(
        Encoder(loaded.model),
        loaded.fingerprint,
        table,
        np.arange(len(table)),
        index_dir,
        options=BuildOptions(require_tile_size=False),
    )


def earlier_results(out: Path) -> dict[str, Any]:
    """What an earlier run of this benchmark wrote to ``out`` (read before this run saves)."""
    try:
        return json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def earlier_generation_runs(
    earlier: dict[str, Any], world: str, overrides: dict[str, Any]
) -> list[dict]:
    """The generation runs an earlier run of this benchmark recorded for the same world (a
    killed generation resumes, so its time is the sum over runs)."""
    if not earlier:
        return []
    same = earlier.get("config", {}).get("world") == world
    same = same and earlier.get("world", {}).get("overrides") == overrides
    return list(earlier["world"].get("generation_runs", [])) if same else []


def shards_on_disk(world: Path) -> int:
    """Finished shards of a world being generated (a shard is renamed into place whole)."""
    return len(list((world / SHARD_DIR).glob("*.tar")))


def chained(runs: list[dict], total: int) -> bool:
    """Whether recorded runs did a whole job between them: the first started from nothing,
    each started where the last one left off, and the last one finished (``total`` units).
    A run killed by SIGKILL records nothing, so the next one starts past where the records
    end, and the runs do not chain."""
    if not runs or runs[0]["shards_before"] != 0 or runs[-1]["shards_after"] != total:
        return False
    return all(b["shards_before"] == a["shards_after"] for a, b in itertools.pairwise(runs))


def generation_summary(runs: list[dict], samples: int) -> dict[str, Any] | None:
    """Wall time and samples/s per core of generating the whole world, summed over the
    recorded runs (work a killed run had not finished as a shard counts too: the time was
    spent); None unless the runs chain (:func:`chained`)."""
    if not runs or not chained(runs, runs[-1]["shards"]):
        return None
    seconds = sum(r["seconds"] for r in runs)
    core_seconds = sum(r["seconds"] * r["workers"] for r in runs)
    return {
        "seconds": round(seconds, 1),
        "runs": len(runs),
        "samples_per_s": round(samples / seconds, 1),
        "samples_per_s_per_core": round(samples / core_seconds, 1),
    }


ENCODING_RUNS = "encoding_runs.json"  # inside the index store: clearing it clears them too


def stored_shards(index_dir: Path) -> int:
    """Gallery shards already encoded into the index store (each is written whole)."""
    return len(list((index_dir / "shards").glob("*.npz")))


def earlier_encoding_runs(index_dir: Path, world: str) -> list[dict]:
    """The encoding runs recorded into this store for ``world`` (the store's folder is named
    by the model, so a record there is of the same model)."""
    try:
        data = json.loads((index_dir / ENCODING_RUNS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return list(data.get("runs", [])) if data.get("world") == world else []


def record_encoding_runs(index_dir: Path, world: str, runs: list[dict]) -> None:
    index_dir.mkdir(parents=True, exist_ok=True)
    write_text(index_dir / ENCODING_RUNS, json.dumps({"world": world, "runs": runs}, indent=1))


def updated_encoding_runs(
    runs: list[dict],
    *,
    before: int,
    info: dict[str, Any],
    stopped: bool,
    record: dict[str, Any],
) -> tuple[list[dict], bool]:
    """The encoding runs after this one, and whether the record file must be written.

    ``before``: shards stored when this run began; ``info``: the finished store's
    ``index.json`` (empty when the run did not finish); ``stopped``: it ended on SIGTERM or
    Ctrl-C (a run that failed otherwise records nothing); ``record``: this run's own figures
    (seconds, encode_s, memory, shards_after). A run that found every shard stored adds
    nothing, unless the run before it stopped short of finishing the store (this one then
    merged the shards and built the search structure, so its time and memory count)."""
    if not info and not stopped:
        return runs, False
    reused = info["shards"]["reused"] if info else before
    reset = reused < before  # stored shards of another world were encoded again
    if reset:
        runs, before = [], reused
    finishing = bool(runs) and not runs[-1]["finished"]
    if info and reused == info["shards"]["count"] and not finishing:
        return runs, reset  # only verified a finished store
    return [*runs, {**record, "shards_before": before, "finished": bool(info)}], True


def encoding_summary(runs: list[dict], shards: int, embeddings_gb: float) -> dict[str, Any]:
    """The index phase over its recorded runs: seconds and encoding seconds summed, the
    largest memory of any run, and the extra beyond the embeddings (which only a run that
    finished mapped). Tiles/s is left to the caller, and only when the runs chain."""
    if not runs:  # a store finished before runs were recorded: nothing to add up
        return {"runs": 0, "timed_whole": False}
    return {
        "seconds": round(sum(r["seconds"] for r in runs), 1),
        "encode_s": round(sum(r["encode_s"] for r in runs), 2),
        "runs": len(runs),
        "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
        "rss_growth_gb": max(r["rss_growth_gb"] for r in runs),
        "peak_anon_gb": max(r["peak_anon_gb"] for r in runs),
        "anon_growth_gb": max(r["anon_growth_gb"] for r in runs),
        "max_processes": max(r["max_processes"] for r in runs),
        "extra_over_embeddings_gb": round(
            max(r["rss_growth_gb"] - (embeddings_gb if r["finished"] else 0.0) for r in runs), 3
        ),
        "timed_whole": chained(runs, shards),
    }


def _exit_on_sigterm() -> Callable[[int, Any], None]:
    """A SIGTERM handler that unwinds the parent (so that it records what it did) and ends
    a forked pool worker at once, as the default handler would."""
    parent = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != parent:
            os._exit(128 + signum)
        sys.exit(128 + signum)

    return handler


def world_disk_gb(world: Path) -> float:
    """The world's files, without the query features an evaluation caches beside them."""
    return folder_gb(world) - folder_gb(world / CACHE_FOLDER)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # PLANET at the lambda synthcore.py chose on val
    parser.add_argument("--checkpoint", default="runs/bench/planet-l0.25-seed0")
    parser.add_argument("--world", default="runs/bench/world-xl")
    parser.add_argument("--work", default="runs/bench/eval-scale", help="index and report")
    parser.add_argument("--regions", type=int, default=None, help="fewer regions than xl's 225")
    parser.add_argument("--per-region", type=int, default=None, help="described samples/region")
    parser.add_argument("--gallery", type=int, default=None, help="total gallery tiles (about)")
    parser.add_argument("--workers", type=int, default=2, help="world generation processes")
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument(
        "--reuse-index",
        action="store_true",
        help="keep the index store an earlier run left: a finished one is only verified, a "
        "stopped one is encoded further (without it, the store is cleared and encoded afresh)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="3 regions x (60 described + 200 gallery tiles)"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval_scale.json"))
    args = parser.parse_args()
    if args.smoke:
        args.regions, args.per_region, args.gallery = 3, 60, 600
        if args.world == parser.get_default("world"):
            args.world = "/tmp/planetloc-eval-scale-smoke/world"
        if args.work == parser.get_default("work"):
            args.work = "/tmp/planetloc-eval-scale-smoke/work"
    overrides: dict[str, Any] = {}
    if args.regions is not None:
        overrides["regions"] = args.regions
    if args.per_region is not None:
        overrides["per_region"] = args.per_region
    if args.gallery is not None:
        overrides["distractors"] = max(1, args.gallery // (args.regions or 225))
    cfg = preset_config("xl", **overrides)
    payload: dict[str, Any] = {
        "benchmark": "eval_scale",
        "config": vars(args),
        "world": {"preset": "xl", "overrides": overrides},
        "phases": {},
        "machine": machine(),
    }

    def save() -> None:
        write_text(args.out, json.dumps(payload, indent=1) + "\n")

    world = Path(args.world)
    check_world(cfg, world)  # a folder holding another world is refused before any work
    payload["world"]["free_disk_gb_before"] = round(free_disk_gb(world), 1)
    earlier = earlier_results(Path(args.out))
    runs = earlier_generation_runs(earlier, args.world, overrides)
    start = time.perf_counter()
    if not (world / "world.json").is_file():
        before = shards_on_disk(world)
        if not (world / "config.json").is_file():
            runs = []  # a world started afresh: earlier records are of another generation
        total: list[int] = []

        def progress(done: int, total_shards: int) -> None:
            total[:] = [total_shards]
            print(f"\rgenerating: {done}/{total_shards} shards", end="", flush=True)

        # A killed generation records what it did before it stops, so that the run which
        # finishes the world can report the time of the whole.
        default = signal.signal(signal.SIGTERM, _exit_on_sigterm())
        try:
            generate_world(cfg, world, workers=args.workers, progress=progress)
        finally:
            signal.signal(signal.SIGTERM, default)
            if total:
                runs.append(
                    {
                        "date": machine()["date"],
                        "seconds": round(time.perf_counter() - start, 1),
                        "workers": args.workers,
                        "shards_before": before,
                        "shards_after": shards_on_disk(world),
                        "shards": total[0],
                    }
                )
                payload["world"]["generation_runs"] = runs
                save()
        print()
    summary = json.loads((world / "world.json").read_text(encoding="utf-8"))
    world_gb = world_disk_gb(world)
    payload["world"].update(
        samples=summary["samples"],
        splits=summary["splits"],
        disk_gb=round(world_gb, 2),
        bytes_per_sample=round(world_gb * GB / summary["samples"]),
        seconds_this_run=round(time.perf_counter() - start, 1),
        generation_runs=runs,
        generation=generation_summary(runs, summary["samples"]),
    )
    save()

    loaded = trained(args.checkpoint)
    index_dir = default_index_dir(args.work, loaded.fingerprint)
    if not args.reuse_index:
        shutil.rmtree(index_dir, ignore_errors=True)  # phase 1 measures encoding, not reuse
    encodings = earlier_encoding_runs(index_dir, args.world)

    # 1. Encode the gallery into the store evaluation reads (and reuses). The table is
    # dropped afterwards, so the next phase starts from the same memory. A run stopped with
    # SIGTERM records what it stored, and a run with --reuse-index goes on from there.
    before = stored_shards(index_dir)
    default = signal.signal(signal.SIGTERM, _exit_on_sigterm())
    mem = PeakMemory()
    start = time.perf_counter()
    info: dict[str, Any] = {}
    timings: dict[str, float] = {}
    stopped = False
    try:
        with mem:
            encode_gallery(loaded, world, index_dir, timings)
        info = json.loads((index_dir / "index.json").read_text(encoding="utf-8"))
    except (SystemExit, KeyboardInterrupt):
        stopped = True
        raise
    finally:
        signal.signal(signal.SIGTERM, default)
        seconds = time.perf_counter() - start
        used = mem.report()
        record = {
            "date": machine()["date"],
            "seconds": round(seconds, 1),
            # Encoding alone: a stopped run's time less reading the table.
            "encode_s": info.get(
                "encode_seconds", round(seconds - timings.get("read_table_s", 0.0), 1)
            ),
            "shards_after": info["shards"]["count"] if info else stored_shards(index_dir),
            **{k: used[k] for k in MEMORY_KEYS},
        }
        encodings, write = updated_encoding_runs(
            encodings, before=before, info=info, stopped=stopped, record=record
        )
        if write:
            record_encoding_runs(index_dir, args.world, encodings)
        payload["encoding_runs"] = encodings
        save()
    # The global embeddings, which ranking reads in full; the physical ones (also mapped)
    # are read only for re-ranked candidates, so their pages count as extra.
    emb_gb = (index_dir / "embeddings.npy").stat().st_size / GB
    whole = encoding_summary(encodings, info["shards"]["count"], emb_gb)
    payload["phases"]["index"] = memory_entry(mem, seconds, emb_gb) | {
        "read_table_s": round(timings["read_table_s"], 1),
        "faiss_build_s": info["build_seconds"],
        "tiles": info["count"],
        "shards_reused": info["shards"]["reused"],
        "store_disk_gb": round(folder_gb(index_dir), 2),
        "mapped_arrays_gb": round(sum(p.stat().st_size for p in index_dir.glob("*.npy")) / GB, 3),
    }
    if encodings:  # over the runs that encoded the gallery: time summed, memory the largest
        payload["phases"]["index"] |= whole
    payload["phases"]["index"]["runs"] = len(encodings)
    # Tiles/s of encoding alone, and only when the runs add up to the whole gallery.
    payload["phases"]["index"]["tiles_per_s"] = (
        round(info["count"] / max(whole["encode_s"], 1e-9), 1) if whole["timed_whole"] else None
    )
    save()

    # 2. The evaluation as `planetloc evaluate` runs it (both protocols, every set).
    with PeakMemory() as mem:
        start = time.perf_counter()
        report = run_evaluation(
            str(world), args.work, name="eval-scale", loaded=loaded, m=args.m, progress=True
        )
        seconds = time.perf_counter() - start
    info = json.loads((index_dir / "index.json").read_text(encoding="utf-8"))
    worldset = report["sets"]["world"]
    queries, gallery = worldset["full"]["queries"], worldset["full"]["gallery"]
    payload["phases"]["evaluate"] = memory_entry(mem, seconds, emb_gb) | {
        "index_verify_s": info["encode_seconds"],
        "index_faiss_rebuild_s": info["build_seconds"],
        "sets": {
            name: {"queries": s["full"]["queries"], "gallery": s["full"]["gallery"]}
            for name, s in report["sets"].items()
        },
        "world_full_R@1": round(worldset["full"]["R@1"], 2),
        f"world_m{args.m}_R@1": round(worldset[f"m{args.m}"]["R@1"], 2),
        "full_matrix_gb_world": round(queries * gallery * 8 / GB, 2),
    }
    save()

    # 3. The m-nearest candidate step alone, for the world set.
    table = evaluation_table(world)
    es = next(s for s in evaluation_sets(table) if s.name == "world")
    gll = table.latlon(es.gallery)
    local_true = np.searchsorted(es.gallery, es.true_rows)
    with PeakMemory() as mem:
        start = time.perf_counter()
        nearest_candidates(gll[local_true], gll, args.m, true_rows=local_true)
        seconds = time.perf_counter() - start
    payload["phases"]["nearest"] = {
        "seconds": round(seconds, 2),
        "queries": int(len(local_true)),
        "gallery": int(len(gll)),
        **mem.report(),
    }
    phases = ("index", "evaluate")
    extra = max(payload["phases"][p]["extra_over_embeddings_gb"] for p in phases)
    payload["summary"] = {
        "queries_world": queries,
        "gallery_world": gallery,
        "end_to_end_s": round(
            payload["phases"]["index"]["seconds"] + payload["phases"]["evaluate"]["seconds"], 1
        ),
        "embeddings_gb": round(emb_gb, 3),
        "extra_over_embeddings_gb": extra,
        "anon_growth_gb": max(
            payload["phases"][p]["anon_growth_gb"] for p in ("index", "evaluate")
        ),
        # Runs that encoded the gallery (a stopped one records its part); the end-to-end
        # time counts all of them, and is the whole only when they add up to the gallery.
        "encoding_runs": len(encodings),
        "encoding_timed_whole": whole["timed_whole"],
        "target_extra_gb": TARGET_EXTRA_GB,
        "meets_target": extra <= TARGET_EXTRA_GB,
        "full_matrix_gb_world": payload["phases"]["evaluate"]["full_matrix_gb_world"],
    }
    save()
    print(
        f"\n{'phase':10s} {'seconds':>9s} {'peak RSS GB':>12s} {'growth GB':>10s} {'extra GB':>9s}"
    )
    for name in ("index", "evaluate"):
        p = payload["phases"][name]
        print(
            f"{name:10s} {p['seconds']:>9} {p['peak_rss_gb']:>12} {p['rss_growth_gb']:>10} "
            f"{p['extra_over_embeddings_gb']:>9}"
        )
    p = payload["phases"]["nearest"]
    print(f"{'nearest':10s} {p['seconds']:>9} {p['peak_rss_gb']:>12} {p['rss_growth_gb']:>10}")
    print(json.dumps(payload["summary"], indent=1))
    return 0 if payload["summary"]["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
