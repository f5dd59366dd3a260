"""Where the stages run: local processes on one machine, or Ray tasks across a cluster.

Both engines split the selected regions into shards (round-robin, so big continents spread
out) and run :func:`planetloc.builder.stages.run_shard` on each; the write stage then runs once
in the driver. Per-provider concurrency and rate limits are divided between shards so the
whole build respects them. Outputs depend only on the inputs, never on the engine.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from planetloc.atomic import write_text
from planetloc.builder.config import BuildConfig, key_env_names
from planetloc.builder.stages import FETCH_STAGES, run_shard, selected_slugs
from planetloc.builder.store import STAGES, WorkStore
from planetloc.builder.write import write_dataset
from planetloc.errors import PlanetlocError

log = logging.getLogger("planetloc.builder")

ENGINES = ("local", "ray")


def shard_regions(slugs: list[str], shards: int) -> list[list[str]]:
    n = max(1, min(shards, len(slugs)))
    return [slugs[i::n] for i in range(n)]


def per_shard_config(cfg: BuildConfig, shards: int) -> BuildConfig:
    """The config each of ``shards`` workers gets: provider limits divided between them."""
    part = copy.deepcopy(cfg)
    for section in ("streetview", "satellite", "describe"):
        sub = getattr(part, section)
        sub.max_concurrency = max(1, sub.max_concurrency // shards)
        sub.rate_per_s = sub.rate_per_s / shards
    return part


def _merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum counts and HTTP statistics of the shards, stage by stage."""
    merged: dict[str, Any] = {}
    for summary in summaries:
        for stage, part in summary.items():
            into = merged.setdefault(stage, {"counts": Counter(), "seconds": 0.0})
            into["counts"].update(part.get("counts", {}))
            into["seconds"] = max(into["seconds"], part.get("seconds", 0.0))
            for key in ("http", "describe"):
                if key in part:
                    bucket = into.setdefault(key, {})
                    for name, value in part[key].items():
                        if isinstance(value, dict):
                            sub = bucket.setdefault(name, Counter())
                            sub.update(value)
                        else:
                            bucket[name] = bucket.get(name, 0) + value
    for part in merged.values():
        part["counts"] = dict(sorted(part["counts"].items()))
        if "describe" in part:
            part["describe"] = {
                k: dict(v) if isinstance(v, Counter) else v for k, v in part["describe"].items()
            }
        done = part["counts"].get("done", 0)
        if part["seconds"]:
            part["samples_per_s"] = round(done / part["seconds"], 2)
    return merged


def _run_local(
    cfg: BuildConfig, out: str, shards: list[list[str]], stages: list[str], retry: bool
) -> list[dict[str, Any]]:
    if len(shards) == 1:
        return [run_shard(cfg, out, shards[0], stages, retry, progress=True)]
    part = per_shard_config(cfg, len(shards))
    with ProcessPoolExecutor(len(shards), mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(run_shard, part, out, shard, stages, retry, False) for shard in shards
        ]
        return [f.result() for f in futures]


def _run_ray(
    cfg: BuildConfig,
    out: str,
    slugs: list[str],
    stages: list[str],
    retry: bool,
    address: str | None,
    workers: int | None,
) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise PlanetlocError("--engine ray needs Ray: pip install 'planetloc[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            # Keys stay in environment variables; forward the ones the config names.
            env = {n: os.environ[n] for n in key_env_names(cfg) if n in os.environ}
            ray.init(address=address, runtime_env={"env_vars": env} if env else None)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        parallel = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        shards = shard_regions(slugs, parallel)
        part = per_shard_config(cfg, len(shards))
        task = ray.remote(num_cpus=1, max_retries=2)(run_shard)
        refs = [task.remote(part, out, shard, stages, retry, False) for shard in shards]
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, PlanetlocError):
                raise PlanetlocError(str(cause)) from None
            raise
    finally:
        if started_here:
            ray.shutdown()


def run_build(
    cfg: BuildConfig,
    out: str | Path,
    stages: list[str],
    *,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    retry_quarantined: bool = False,
    allow_partial: bool = False,
) -> dict[str, Any]:
    """Run ``stages`` (in pipeline order) and write ``<out>/report.json``; returns the report.

    ``workers`` is the number of shards run in parallel: processes for the local engine
    (default 1), Ray tasks for the Ray engine (default: the cluster's CPUs).
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise PlanetlocError(f"unknown stage {unknown[0]!r} (stages: {', '.join(STAGES)})")
    if engine not in ENGINES:
        raise PlanetlocError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and workers < 1:
        raise PlanetlocError(f"--workers must be at least 1, got {workers}")
    out_s = str(Path(out).resolve())
    slugs = selected_slugs(cfg)
    store = WorkStore(out_s)
    store.work.mkdir(parents=True, exist_ok=True)
    write_text(store.work / "config.json", json.dumps(cfg.to_dict(), indent=1, sort_keys=True))
    started = time.perf_counter()
    fetch = [s for s in stages if s == "sample" or s in FETCH_STAGES]
    summaries: list[dict[str, Any]] = []
    if fetch:
        if engine == "ray":
            summaries = _run_ray(cfg, out_s, slugs, fetch, retry_quarantined, address, workers)
        else:
            shards = shard_regions(slugs, workers or 1)
            summaries = _run_local(cfg, out_s, shards, fetch, retry_quarantined)
    report: dict[str, Any] = {
        "engine": engine,
        "regions": len(slugs),
        "stages": _merge(summaries),
    }
    if "write" in stages:
        report["dataset"] = write_dataset(cfg, out_s, slugs, allow_partial)
    quarantined = store.quarantined()
    report["quarantine"] = {
        "count": len(quarantined),
        "by_stage": dict(Counter(q["stage"] for q in quarantined)),
        "samples": [{k: q[k] for k in ("id", "stage", "reason", "attempts")} for q in quarantined],
    }
    report["seconds"] = round(time.perf_counter() - started, 3)
    write_text(Path(out_s) / "report.json", json.dumps(report, indent=1, sort_keys=True))
    return report
