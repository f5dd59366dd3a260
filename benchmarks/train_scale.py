"""Training memory and speed as the world grows: the streaming trainer against the in-memory one.

Worlds: the default SynthCORE world settings with no gallery tiles, street views or other
phrasings, at 10k (50 regions x 200) and 100k (225 x 445) samples (``--sizes`` adds 1m,
225 x 4445, when the disk holds it), one PNG file per tile so that both trainers read them;
the 100k world is also packed into WebDataset shards (the same PNG tiles).

Runs, all ``planet`` on the default backbone (minilm-cnn), batch 64, ``--steps`` steps, each a
separate ``planetloc train`` process:

* ``new``: the streaming trainer, 2 DataLoader workers, ``text_cache`` and ``signature_cache``
  off, so nothing of the dataset's size is built;
* ``new_cached``: the same with both caches ``auto`` (on disk beside the data), built in the
  run (cold start), and ``new_cached_warm``: again, reusing them; the on-disk caches should
  keep the memory of training flat;
* ``new_shards``: the streaming trainer reading the shards (caches off);
* ``old``: the in-memory trainer of commit 6b335b3 (before the streaming rewrite: every
  training tile, signature and text feature is loaded into memory first), run from a copy of
  that commit's sources with the same interpreter. A watchdog kills it when its memory passes
  ``--old-cap-gb``; it is then recorded as killed at that size instead of taking the machine.

Memory is sampled every 0.2 s over the whole process tree (trainer and its workers): the
sum of RSS, and the sums of PSS and USS. Forked workers share pages with the trainer, so the
RSS sum counts shared pages once per process; PSS is the fair total. Peaks are reported
for the whole run and for its training phase (after the first logged step). Speed is the
median samples/s of the logged intervals after the first.

``--cached-up-to SIZE`` runs the two cached variants only up to that size: building the
text cache of a 100k world (encoding every text once) is the longest step of the benchmark.

Data pipeline alone: the training stream of the largest world (decode, signatures in the
workers, augmentation) read for ``--pipeline-batches`` batches with 1 and 2 workers, as
samples/s per worker, and its ratio to the model's consumption rate on this CPU (samples/s
of the ``new_cached_warm`` run with its waits for data taken out).

Target: peak memory (PSS of the process tree) of ``new`` and ``new_cached_warm`` at 100k
within 10% of that at 10k. Baseline in the same run: the in-memory trainer (expected to grow
linearly with the world, or to be killed).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train_scale.py [--sizes 10k 100k] [--steps 30]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train_scale.py --smoke --out /tmp/ts.json

Worlds are kept in ``--work`` and reused; the caches beside them are removed before each
world's runs. Prints a table and writes benchmarks/results/train_scale.json after every run.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from memwatch import PeakMemory, folder_gb, free_disk_gb, machine
from planetloc.atomic import write_text
from planetloc.data.pack import write_dataset_shards
from planetloc.data.stream import StreamSpec, open_source, train_loader
from planetloc.data.synth.config import preset_config
from planetloc.data.synth.generate import generate_world
from planetloc.data.table import read_table
from planetloc.model.signature_cache import Signatures
from planetloc.model.signatures import SignatureConfig
from planetloc.train.trainer import augment_tiles

REPO = Path(__file__).resolve().parent.parent
OLD_COMMIT = "6b335b3"  # the last commit with the in-memory trainer
SIZES = {  # name: (regions, described samples per region)
    "1k": (10, 100),
    "3k": (15, 200),
    "10k": (50, 200),
    "100k": (225, 445),
    "1m": (225, 4445),
}
TARGET_RATIO = 1.10
BATCH = 64


# Region maps wide enough for that many points 30 m apart on streets (the default 1.5 km
# holds about 400 in the sparsest regions).
EXTENT_M = {"100k": 3000.0, "1m": 9000.0}


def world_config(size: str) -> Any:
    regions, per_region = SIZES[size]
    extra: dict[str, Any] = {}
    if size in EXTENT_M:
        extra["extent_m"] = EXTENT_M[size]
    return preset_config(
        "default",
        regions=regions,
        per_region=per_region,
        distractors=0,
        street_views=False,
        alt_texts=False,
        **extra,
    )


def world_summary(folder: Path, started: float) -> dict[str, Any]:
    """What a finished world holds, and the time spent on it since ``started``."""
    summary = json.loads((folder / "world.json").read_text(encoding="utf-8"))
    return {
        "samples": summary["samples"],
        "train_samples": summary["splits"].get("train", 0),
        "disk_gb": round(folder_gb(folder), 3),
        "seconds_this_run": round(time.perf_counter() - started, 1),
    }


def make_world(cfg: Any, folder: Path, workers: int) -> dict[str, Any]:
    """Generate (or finish, or reuse) a world; what it holds and what it cost."""
    start = time.perf_counter()
    if not (folder / "world.json").is_file():
        generate_world(cfg, folder, workers=workers)
    return world_summary(folder, start)


def pack_world(files: Path, out: Path) -> dict[str, Any]:
    """The file-per-tile world packed into WebDataset shards (the same samples and tile
    bytes; packing is I/O only, generating the world again would double the setup time)."""
    start = time.perf_counter()
    if not (out / "world.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        write_dataset_shards(read_table(files, with_meta=True), out, shard_size=1000)
        shutil.copy(files / "world.json", out / "world.json")
    return world_summary(out, start) | {"made_by": f"packing {files.name}"}


def old_sources(tmp: Path) -> Path:
    """The ``src`` folder of the in-memory trainer's commit, extracted from git (read only)."""
    try:
        data = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", OLD_COMMIT, "src"],
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        raise SystemExit(f"cannot read commit {OLD_COMMIT} from {REPO} with git: {err}") from None
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "src"


def steady_rate(run: Path) -> dict[str, float | None]:
    """Median samples/s over logged intervals after the first, and the share spent waiting
    for data (streaming trainer only)."""
    path = run / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    rows = [r for r in rows if "samples_per_s" in r]
    later = rows[1:] or rows
    if not later:
        return {"samples_per_s": None, "data_wait_share": None}
    out: dict[str, float | None] = {
        "samples_per_s": round(statistics.median(r["samples_per_s"] for r in later), 1)
    }
    if "data_wait_s" in later[0] and len(rows) > 1:
        shares = []
        for prev, row in itertools.pairwise(rows):
            seconds = (row["step"] - prev["step"]) * BATCH / row["samples_per_s"]
            shares.append(row["data_wait_s"] / seconds)
        out["data_wait_share"] = round(statistics.median(shares), 3)
    return out


def measure(
    cmd: list[str], env: dict[str, str], run: Path, *, cap_gb: float | None = None
) -> dict[str, Any]:
    """Run one training process; its peak memory (process tree), wall time and speed."""
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    log = run.parent / f"{run.name}.log"
    killed: dict[str, float] = {}
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(gb: float) -> None:
        killed["gb"] = round(gb, 2)
        os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its workers

    start = time.perf_counter()
    mem = PeakMemory(proc.pid, tree=True, full=True, limit_gb=cap_gb, on_limit=kill)
    with mem:
        mem.phase = "setup"
        while proc.poll() is None:
            if mem.phase == "setup" and (run / "metrics.jsonl").exists():
                mem.phase = "train"
            time.sleep(0.2)
    wall = time.perf_counter() - start
    out: dict[str, Any] = {"wall_s": round(wall, 1), "exit": proc.returncode, **mem.report()}
    out.update(steady_rate(run))
    if killed:
        out["killed_at_gb"] = killed["gb"]
    elif proc.returncode != 0:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        out["error"] = lines[-1][-300:] if lines else "no output"
    return out


def train_cmd(
    python: str, world: Path, run: Path, steps: int, extra: list[str], *, old: bool = False
) -> list[str]:
    sets = [f"steps={steps}", f"batch_size={BATCH}", "eval_every=0", "save_every=100000"]
    if not old:  # the old trainer has no selection (nor the setting)
        sets.append("select_alpha=false")  # no val pass: memory and time of training alone
    sets.append(f"log_every={max(1, steps // 6)}")
    cmd = [python, "-m", "planetloc.cli", "train", "--data", str(world), "--out", str(run)]
    cmd += ["--method", "planet"]
    for item in [*sets, *extra]:
        cmd += ["--set", item]
    return cmd


def run_old(
    python: str, world: Path, size: str, args: argparse.Namespace, env: dict, src: Path
) -> dict[str, Any]:
    """The in-memory trainer of OLD_COMMIT on ``world``, killed past ``--old-cap-gb``."""
    print(f"[{size}] old in-memory trainer ({OLD_COMMIT})", flush=True)
    run = Path(args.work).resolve() / "runs" / f"old-{size}"
    out = measure(
        train_cmd(python, world, run, args.steps, [], old=True),
        env | {"PYTHONPATH": str(src)},
        run,
        cap_gb=args.old_cap_gb,
    )
    out["cache_disk_gb"] = round(folder_gb(world / ".planetloc-cache"), 3)
    shutil.rmtree(world / ".planetloc-cache", ignore_errors=True)
    return out


def pipeline_rate(
    world: Path, workers: int, batches: int, cache: Path | None = None
) -> dict[str, float]:
    """samples/s of the training stream alone: decode and signatures in ``workers`` worker
    processes (0: in this process), augmentation here, as the trainer does."""
    spec = StreamSpec(
        seed=0,
        batch_size=BATCH,
        workers=workers,
        image_size=128,
        signatures=Signatures(SignatureConfig(), cache),
    )
    loader = iter(train_loader(open_source(world), spec))
    gen = torch.Generator().manual_seed(0)
    for _ in range(4 * max(workers, 1) + 1):  # start-up and the prefetched batches
        next(loader)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        batch = next(loader)
        augment_tiles(batch["tiles"], gen)
        seen += len(batch["keys"])
    rate = seen / (time.perf_counter() - start)
    del loader
    return {
        "samples_per_s": round(rate, 1),
        "samples_per_s_per_worker": round(rate / max(workers, 1), 1),
    }


def disk_needed_gb(results: dict[str, Any], size: str, shards: bool) -> float | None:
    """Disk a world of ``size`` would need, scaled from the largest world measured so far."""
    done = [s for s in results if results[s].get("world")]
    if not done:
        return None
    ref = results[done[-1]]
    per_sample = ref["world"]["disk_gb"] / ref["world"]["samples"]
    if shards and ref.get("world_shards"):
        per_sample += ref["world_shards"]["disk_gb"] / ref["world_shards"]["samples"]
    # One cache at a time is on disk: each is removed after its runs.
    caches = max((ref.get(v) or {}).get("cache_disk_gb", 0.0) for v in ("new_cached", "old"))
    regions, per_region = SIZES[size]
    return (per_sample + caches / ref["world"]["samples"]) * regions * per_region


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["10k", "100k"], choices=list(SIZES))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--work", default="runs/bench/train-scale")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of new runs")
    parser.add_argument("--old-cap-gb", type=float, default=16.0)
    parser.add_argument("--pipeline-batches", type=int, default=40)
    parser.add_argument("--shards-from", default="100k", help="smallest size also run as shards")
    parser.add_argument("--no-old", action="store_true", help="skip the in-memory trainer")
    parser.add_argument(
        "--only-old",
        action="store_true",
        help="run only the in-memory trainer on the worlds already made, into the --out file",
    )
    parser.add_argument(
        "--cached-up-to",
        default="1m",
        choices=list(SIZES),
        help="largest size also run with the on-disk caches (building them costs the most)",
    )
    parser.add_argument("--smoke", action="store_true", help="1k and 3k worlds, 8 steps")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "train_scale.json")
    )
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.steps, args.pipeline_batches, args.shards_from = ["1k", "3k"], 8, 8, "3k"
        if args.work == parser.get_default("work"):
            args.work = "/tmp/planetloc-train-scale-smoke"
    sizes = sorted(args.sizes, key=lambda s: SIZES[s][0] * SIZES[s][1])
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    results: dict[str, Any] = {}
    payload: dict[str, Any] = {
        "benchmark": "train_scale",
        "config": vars(args) | {"batch_size": BATCH, "method": "planet", "backbone": "minilm-cnn"},
        "sizes": results,
        "machine": machine(),
    }

    def save() -> None:
        write_text(args.out, json.dumps(payload, indent=1) + "\n")

    if args.only_old:
        payload = json.loads(Path(args.out).read_text(encoding="utf-8"))
        with tempfile.TemporaryDirectory(prefix="planetloc-old-") as tmp:
            src = old_sources(Path(tmp))
            for size in sizes:
                world = work / f"world-{size}"
                payload["sizes"][size]["old"] = run_old(python, world, size, args, env, src)
                save()
        return 0
    shard_threshold = SIZES[args.shards_from][0] * SIZES[args.shards_from][1]
    cached_limit = SIZES[args.cached_up_to][0] * SIZES[args.cached_up_to][1]
    with tempfile.TemporaryDirectory(prefix="planetloc-old-") as tmp:
        old_src = None if args.no_old else old_sources(Path(tmp))
        for size in sizes:
            regions, per_region = SIZES[size]
            shards = regions * per_region >= shard_threshold
            need = disk_needed_gb(results, size, shards)
            free = free_disk_gb(work)
            if need is not None and need * 1.2 > free:
                results[size] = {"skipped": f"needs about {need:.0f} GB of disk, {free:.0f} free"}
                save()
                continue
            entry: dict[str, Any] = {"regions": regions, "per_region": per_region}
            results[size] = entry
            world = work / f"world-{size}"
            print(f"[{size}] world", flush=True)
            entry["world"] = make_world(world_config(size), world, args.workers)
            save()
            shutil.rmtree(world / ".planetloc-cache", ignore_errors=True)
            runs = work / "runs"

            def train_run(
                name: str, data: Path, extra: list[str], folder: Path = runs / size
            ) -> dict[str, Any]:
                run = folder.parent / f"{name}-{folder.name}"
                return measure(train_cmd(python, data, run, args.steps, extra), env, run)

            off = ['text_cache="off"', 'signature_cache="off"', f"workers={args.workers}"]
            print(f"[{size}] new (caches off)", flush=True)
            entry["new"] = train_run("new", world, off)
            save()
            if regions * per_region <= cached_limit:
                print(f"[{size}] new (on-disk caches, built in the run)", flush=True)
                cached = ["text_cache=auto", "signature_cache=auto", f"workers={args.workers}"]
                entry["new_cached"] = train_run("cached", world, cached)
                cache_gb = round(folder_gb(world / ".planetloc-cache"), 3)
                entry["new_cached"]["cache_disk_gb"] = cache_gb
                save()
                print(f"[{size}] new (on-disk caches, reused)", flush=True)
                entry["new_cached_warm"] = train_run("warm", world, cached)
                shutil.rmtree(world / ".planetloc-cache", ignore_errors=True)
                save()
            entry["new_shards"] = None
            if shards:
                sharded = work / f"world-{size}-shards"
                print(f"[{size}] shards world", flush=True)
                entry["world_shards"] = pack_world(world, sharded)
                print(f"[{size}] new (shards, caches off)", flush=True)
                entry["new_shards"] = train_run("shards", sharded, off)
                save()
            entry["old"] = None
            if old_src is not None:
                entry["old"] = run_old(python, world, size, args, env, old_src)
                save()

    # The data pipeline alone, on the largest world trained.
    measured = [s for s in sizes if "new" in results.get(s, {})]
    largest = measured[-1]
    # The model's rate: the trainer reusing both caches (its workers only decode and look
    # up), its time waiting for data taken out.
    rate_from = "new_cached_warm" if results[largest].get("new_cached_warm") else "new"
    cached = results[largest][rate_from]
    consumption = None
    if cached.get("samples_per_s"):
        consumption = round(cached["samples_per_s"] / (1 - (cached["data_wait_share"] or 0)), 1)
    pipe: dict[str, Any] = {
        "world": largest,
        "batches": args.pipeline_batches,
        "model_samples_per_s": consumption,
        "model_rate_from": f"{rate_from} at {largest}, data waits excluded",
    }
    for label, world in (
        ("files", work / f"world-{largest}"),
        ("shards", work / f"world-{largest}-shards"),
    ):
        if not (world / "world.json").is_file():
            continue
        for workers in (1, 2):
            print(f"pipeline {label}, {workers} workers", flush=True)
            rate = pipeline_rate(world, workers, args.pipeline_batches)
            if consumption:
                rate["per_worker_vs_model"] = round(
                    rate["samples_per_s_per_worker"] / consumption, 2
                )
            pipe[f"{label}_{workers}_workers"] = rate
    payload["pipeline"] = pipe

    smallest = measured[0]
    summary: dict[str, Any] = {}
    for variant in ("new", "new_cached", "new_cached_warm"):
        base = results[smallest].get(variant)
        for s in measured[1:]:
            run = results[s].get(variant)
            if not base or not run:
                continue  # not run at both sizes (--cached-up-to)
            for kind in ("peak_pss_gb", "peak_rss_gb"):
                summary[f"{variant}_{kind}_{s}_over_{smallest}"] = round(run[kind] / base[kind], 3)
    for s in measured[1:]:
        ratios = [
            summary[key]
            for v in ("new", "new_cached_warm")
            if (key := f"{v}_peak_pss_gb_{s}_over_{smallest}") in summary
        ]
        summary[f"meets_target_{s}"] = bool(ratios) and all(r <= TARGET_RATIO for r in ratios)
    payload["summary"] = summary
    save()

    print(
        f"\n{'world':6s} {'run':15s} {'wall s':>7s} {'samples/s':>9s} {'peak RSS':>9s} "
        f"{'peak PSS':>9s} {'train PSS':>9s}  note"
    )
    for s in sizes:
        entry = results[s]
        if "skipped" in entry:
            print(f"{s:6s} skipped: {entry['skipped']}")
            continue
        for variant in ("new", "new_cached", "new_cached_warm", "new_shards", "old"):
            run = entry.get(variant)
            if not run:
                continue
            note = f"killed at {run['killed_at_gb']} GB" if "killed_at_gb" in run else ""
            note = note or run.get("error", "")
            print(
                f"{s:6s} {variant:15s} {run['wall_s']:>7} {run['samples_per_s'] or '-':>9} "
                f"{run['peak_rss_gb']:>9} {run['peak_pss_gb']:>9} "
                f"{run.get('train_peak_pss_gb', '-'):>9}  {note}"
            )
    print(json.dumps({"pipeline": pipe, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
