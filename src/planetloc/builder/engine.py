"""Where the stages run: local processes on one machine, or Ray tasks across a cluster.

Both engines split the selected regions into shards (round-robin, so big continents spread
out) and run :func:`planetloc.builder.stages.run_shard` on each; the write stage then runs once
in the driver. Per-provider concurrency and rate limits are divided between shards so the
whole build respects them. Outputs depend only on the inputs, never on the engine.
Each run is recorded in the work folder's ledger (:mod:`planetloc.builder.ledger`), and
``report.json`` reports the run together with every earlier one.
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
from planetloc.builder import ledger
from planetloc.builder.config import BuildConfig, key_env_names, secrets_of
from planetloc.builder.fetch import Redactor
from planetloc.builder.logs import build_logging
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


def _run_local(
    cfg: BuildConfig,
    out: str,
    shards: list[list[str]],
    stages: list[str],
    retry: bool,
    run_id: str,
) -> None:
    if len(shards) == 1:
        run_shard(cfg, out, shards[0], stages, retry, True, run_id, 0)
        return
    part = per_shard_config(cfg, len(shards))
    with ProcessPoolExecutor(len(shards), mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(run_shard, part, out, shard, stages, retry, False, run_id, k)
            for k, shard in enumerate(shards)
        ]
        for future in futures:
            future.result()


def _run_ray(
    cfg: BuildConfig,
    out: str,
    slugs: list[str],
    stages: list[str],
    retry: bool,
    address: str | None,
    workers: int | None,
    run_id: str,
) -> None:
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
        refs = [
            task.remote(part, out, shard, stages, retry, False, run_id, k)
            for k, shard in enumerate(shards)
        ]
        try:
            ray.get(refs)
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, PlanetlocError):
                raise PlanetlocError(str(cause)) from None
            raise
    finally:
        if started_here:
            ray.shutdown()


def stages_for(command: str) -> list[str]:
    """The stages a ``planetloc build COMMAND`` runs: ``run`` means all of them, in order."""
    if command == "run":
        return list(STAGES)
    if command not in STAGES:
        raise PlanetlocError(f"unknown stage {command!r} (stages: {', '.join(STAGES)}, run)")
    return [command]


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
    (default 1), Ray tasks for the Ray engine (default: the cluster's CPUs). The report is
    written however the run ends; a run that stops with an error still records its spend.
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
    run_id = ledger.start_run(store, stages, engine, workers)
    log.info("run %s: stages %s, engine %s, %d regions", run_id, stages, engine, len(slugs))
    started = time.perf_counter()
    fetch = [s for s in stages if s == "sample" or s in FETCH_STAGES]
    dataset: dict[str, Any] | None = None
    try:
        if fetch and engine == "ray":
            _run_ray(cfg, out_s, slugs, fetch, retry_quarantined, address, workers, run_id)
        elif fetch:
            shards = shard_regions(slugs, workers or 1)
            _run_local(cfg, out_s, shards, fetch, retry_quarantined, run_id)
        if "write" in stages:
            dataset = write_dataset(cfg, out_s, slugs, allow_partial)
    except BaseException as err:  # a stopped run still reports what it did and spent
        seconds = time.perf_counter() - started
        reason = Redactor(secrets_of(cfg))(str(err) or type(err).__name__)
        ledger.finish_run(store, run_id, "stopped", seconds, reason)
        _write_report(store, run_id, engine, slugs, seconds, dataset)
        log.info("run %s stopped after %.1f s: %s", run_id, seconds, reason)
        raise
    seconds = time.perf_counter() - started
    ledger.finish_run(store, run_id, "finished", seconds)
    log.info("run %s finished in %.1f s", run_id, seconds)
    return _write_report(store, run_id, engine, slugs, seconds, dataset)


def _write_report(
    store: WorkStore,
    run_id: str,
    engine: str,
    slugs: list[str],
    seconds: float,
    dataset: dict[str, Any] | None,
) -> dict[str, Any]:
    """``report.json``: this run (stages, dataset, quarantine), every run, and their totals."""
    runs = ledger.read_runs(store, current=run_id)
    this = next(r for r in runs if r["id"] == run_id)
    report: dict[str, Any] = {
        "run": run_id,
        "status": this["status"],
        "engine": engine,
        "regions": len(slugs),
        "stages": this["stages"],
    }
    if dataset is not None:
        report["dataset"] = dataset
    quarantined = store.quarantined()
    report["quarantine"] = {
        "count": len(quarantined),
        "by_stage": dict(Counter(q["stage"] for q in quarantined)),
        "samples": [{k: q[k] for k in ("id", "stage", "reason", "attempts")} for q in quarantined],
    }
    report["seconds"] = round(seconds, 3)
    report["runs"] = runs
    report["totals"] = ledger.spend_totals(runs)
    write_text(store.out / "report.json", json.dumps(report, indent=1, sort_keys=True))
    return report


def run_logged_build(
    cfg: BuildConfig,
    out: str | Path,
    stages: list[str],
    *,
    verbose: bool = False,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    retry_quarantined: bool = False,
    allow_partial: bool = False,
) -> dict[str, Any]:
    """:func:`run_build` with its log appended to ``<out>/build.log`` and shown on stderr
    (warnings; everything with ``verbose``), keys masked in both."""
    with build_logging(out, Redactor(secrets_of(cfg)), verbose):
        return run_build(
            cfg,
            out,
            stages,
            engine=engine,
            workers=workers,
            address=address,
            retry_quarantined=retry_quarantined,
            allow_partial=allow_partial,
        )
