"""What each run of a build did and spent, kept across resumed, stopped and killed runs.

Every run gets a folder ``work/runs/<NNNN>/``: ``run.json`` (when it started and ended, the
stages, how it ended) and one file per shard holding that shard's running summary (sample
counts, HTTP requests, LVLM requests and tokens). A shard rewrites its file at least once a
second and after every description, so a run killed with ``kill -9`` still shows what it
spent; the next report lists it as ``interrupted``. Totals add up every run.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from planetloc.atomic import write_text
from planetloc.builder.store import WorkStore

# Longest a shard's spend goes unrecorded (besides describe, which records every answer).
FLUSH_EVERY_S = 1.0
# Summary parts that count what was spent; sample counts are per run only.
SPEND_KEYS = ("http", "describe")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _runs_dir(store: WorkStore) -> Path:
    return store.work / "runs"


def add_counts(into: dict[str, Any], values: dict[str, Any]) -> None:
    """Add numbers (and nested dicts of numbers) of ``values`` into ``into``."""
    for key, value in values.items():
        if isinstance(value, dict):
            add_counts(into.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            into[key] = into.get(key, 0) + value


def merge_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the shards' counts and HTTP/LVLM statistics, stage by stage."""
    merged: dict[str, Any] = {}
    for summary in summaries:
        for stage, part in summary.items():
            into = merged.setdefault(stage, {"counts": {}, "seconds": 0.0})
            add_counts(into["counts"], part.get("counts", {}))
            into["seconds"] = max(into["seconds"], part.get("seconds", 0.0))
            for key in SPEND_KEYS:
                if key in part:
                    add_counts(into.setdefault(key, {}), part[key])
    for part in merged.values():
        part["counts"] = dict(sorted(part["counts"].items()))
        if "describe" in part:
            part["describe"]["rejected"] = dict(sorted(part["describe"]["rejected"].items()))
        done = part["counts"].get("done", 0)
        if part["seconds"]:
            part["samples_per_s"] = round(done / part["seconds"], 2)
    return merged


def start_run(store: WorkStore, stages: list[str], engine: str, workers: int | None) -> str:
    """Claim the next run number and record its start; returns the run id."""
    root = _runs_dir(store)
    root.mkdir(parents=True, exist_ok=True)
    number = max((int(p.name) for p in root.iterdir() if p.name.isdigit()), default=0) + 1
    while True:
        try:
            (root / f"{number:04d}").mkdir()
            break
        except FileExistsError:  # another build in this folder took it first
            number += 1
    run_id = f"{number:04d}"
    meta = {
        "id": run_id,
        "started": _now(),
        "stages_run": stages,
        "engine": engine,
        "workers": workers,
        "status": "running",
    }
    write_text(root / run_id / "run.json", json.dumps(meta, indent=1, sort_keys=True))
    return run_id


def finish_run(
    store: WorkStore, run_id: str, status: str, seconds: float, error: str | None = None
) -> None:
    """Record how a run ended: ``finished``, or ``stopped`` with the error that stopped it."""
    path = _runs_dir(store) / run_id / "run.json"
    meta = json.loads(path.read_text("utf-8"))
    meta.update(status=status, finished=_now(), seconds=round(seconds, 3))
    if error:
        meta["error"] = error
    write_text(path, json.dumps(meta, indent=1, sort_keys=True))


class ShardLedger:
    """One shard's running summary in its run's folder, rewritten as the work goes."""

    def __init__(self, store: WorkStore, run_id: str | None, shard: int) -> None:
        # A retried shard (Ray retries failed tasks) gets its own file: both attempts spent.
        name = f"shard-{shard:03d}-{uuid.uuid4().hex[:8]}.json"
        self.path = _runs_dir(store) / run_id / name if run_id else None
        self.last = float("-inf")

    def record(self, summary: Callable[[], dict[str, Any]], force: bool = False) -> None:
        """Write ``summary()`` if ``force`` or a second has passed since the last write."""
        now = time.monotonic()
        if self.path is None or (not force and now - self.last < FLUSH_EVERY_S):
            return
        self.last = now
        payload = {"updated": _now(), "summary": summary()}
        write_text(self.path, json.dumps(payload, sort_keys=True))


def read_runs(store: WorkStore, current: str | None = None) -> list[dict[str, Any]]:
    """Every run recorded in the work folder, oldest first, with its merged stage summary.

    A run still marked ``running`` that is not ``current`` was killed: ``interrupted``.
    """
    root = _runs_dir(store)
    runs = []
    folders = [p for p in root.glob("*") if p.name.isdigit()] if root.is_dir() else []
    for folder in sorted(folders, key=lambda p: int(p.name)):
        meta_path = folder / "run.json"
        if not meta_path.is_file():
            continue
        meta = json.loads(meta_path.read_text("utf-8"))
        shards = [json.loads(p.read_text("utf-8")) for p in sorted(folder.glob("shard-*.json"))]
        meta["stages"] = merge_summaries([s["summary"] for s in shards])
        if meta["status"] == "running" and meta["id"] != current:
            meta["status"] = "interrupted"
            meta["last_update"] = max((s["updated"] for s in shards), default=meta["started"])
            meta["seconds"] = max((p["seconds"] for p in meta["stages"].values()), default=0.0)
        runs.append(meta)
    return runs


def spend_totals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """HTTP and LVLM statistics summed over ``runs``, per stage."""
    stages: dict[str, Any] = {}
    for run in runs:
        for stage, part in run["stages"].items():
            for key in SPEND_KEYS:
                if key in part:
                    add_counts(stages.setdefault(stage, {}).setdefault(key, {}), part[key])
    return {
        "runs": len(runs),
        "seconds": round(sum(r.get("seconds", 0.0) for r in runs), 3),
        "stages": dict(sorted(stages.items())),
    }
