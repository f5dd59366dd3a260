"""The fetch stages over a shard of regions, run with asyncio concurrency in one process.

The engine hands each worker (a local process or a Ray task) a shard of regions; this module
runs the requested stages over every point of the shard, one stage after another, skipping
what is already done, quarantining what keeps failing, and returning counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from planetloc.builder import describe as describe_mod
from planetloc.builder import satellite as satellite_mod
from planetloc.builder import streetview as streetview_mod
from planetloc.builder.config import BuildConfig, output_settings, secrets_of
from planetloc.builder.fetch import BadResponse, FetchFailed, RedactingFilter, Redactor
from planetloc.builder.ledger import ShardLedger
from planetloc.builder.sampling import (
    Point,
    quota_of,
    read_points_file,
    resolve_regions,
    sample_region,
)
from planetloc.builder.store import WorkStore
from planetloc.errors import PlanetlocError
from planetloc.geo.regions import get_region

log = logging.getLogger("planetloc.builder")

FETCH_STAGES = ("streetview", "satellite", "describe")


def run_sample_stage(cfg: BuildConfig, store: WorkStore, slugs: list[str]) -> dict[str, int]:
    """Write the points of every region that has none yet (sampling is deterministic)."""
    candidates = read_points_file(cfg.sample.points_file) if cfg.sample.points_file else None
    store.check_settings("points", output_settings(cfg, "sample"))
    counts: Counter[str] = Counter()
    for slug in slugs:
        if store.has_points(slug):
            counts["existing"] += len(store.read_points(slug))
            continue
        region = get_region(slug)
        points = sample_region(region, cfg.sample, candidates)
        quota = quota_of(region, cfg.sample)
        if len(points) < quota:
            log.warning(
                "%s: only %d of %d points (land, spacing or the points file ran out)",
                slug,
                len(points),
                quota,
            )
            counts["shortfall"] += quota - len(points)
        store.write_points(slug, points)
        counts["done"] += len(points)
    return dict(counts)


class ShardRunner:
    def __init__(
        self,
        cfg: BuildConfig,
        out: Path,
        retry_quarantined: bool,
        progress: bool,
        ledger: ShardLedger | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = WorkStore(out)
        self.retry_quarantined = retry_quarantined
        self.progress = progress
        self.redactor = Redactor(secrets_of(cfg))
        self.banned: dict[str, list[str]] = {}
        self.ledger = ledger or ShardLedger(self.store, None, 0)
        self.finished: dict[str, Any] = {}  # summaries of the stages already run
        self.counts: dict[str, Counter[str]] = {}
        self.sources: dict[str, Any] = {}
        self.started = time.perf_counter()
        self.idle = True  # no sample needed work: no seconds to report

    def _state(self, stage: str, point: Point) -> str | None:
        """Why ``point`` needs no work in ``stage`` now, or ``None`` when it does."""
        store = self.store
        if store.read_record(stage, point.region, point.id) is not None:
            return "existing"
        if not self.retry_quarantined and store.is_quarantined(stage, point.id):
            return "quarantined_before"
        for earlier in FETCH_STAGES[: FETCH_STAGES.index(stage)]:
            if store.is_quarantined(earlier, point.id):
                return "quarantined_before"
        if stage == "describe" and not self.cfg.with_street:
            return "no_street_photo"
        # Descriptions are paid for: one is asked only for a sample whose street photo and
        # satellite tile are both in hand, so none is thrown away for want of a tile.
        needs = {"satellite": ["streetview"], "describe": ["streetview", "satellite"]}
        for earlier in needs.get(stage, []) if self.cfg.with_street else []:
            record = store.read_record(earlier, point.region, point.id)
            if record is None:
                return "waiting"
            if record["status"] != "ok":
                return "no_coverage"
        return None

    async def _streetview(self, source: Any, point: Point) -> str:
        photo = await source.nearest(point.lat, point.lon, self.cfg.streetview.radius_m)
        if photo is None:
            self.store.save("streetview", point.region, point.id, {"status": "none"})
            return "no_coverage"
        record = {
            "status": "ok",
            "lat": round(photo.lat, 7),
            "lon": round(photo.lon, 7),
            "distance_m": photo.distance_m,
            "meta": photo.meta,
        }
        self.store.save("streetview", point.region, point.id, record, photo.image)
        return "done"

    async def _satellite(self, source: Any, point: Point) -> str:
        lat, lon = point.lat, point.lon
        if self.cfg.satellite.centre == "photo" and self.cfg.with_street:
            street = self.store.read_record("streetview", point.region, point.id) or {}
            lat, lon = street.get("lat", lat), street.get("lon", lon)
        try:
            image, meta = await source.fetch(lat, lon)
        except satellite_mod.NoCoverage as err:
            record = {"status": "none", "reason": str(err)}
            self.store.save("satellite", point.region, point.id, record)
            return "no_coverage"
        record = {"status": "ok", "lat": lat, "lon": lon, "meta": meta}
        self.store.save("satellite", point.region, point.id, record, image)
        return "done"

    async def _describe(self, source: describe_mod.Describer, point: Point) -> str:
        if point.region not in self.banned:
            self.banned[point.region] = describe_mod.place_names(
                get_region(point.region), self.cfg.describe.banned_terms
            )
        image = self.store.image_path("streetview", point.region, point.id).read_bytes()
        result = await source.describe(image, self.banned[point.region])
        self.store.save("describe", point.region, point.id, {"status": "ok", **result})
        return "done"

    def _open(self, stage: str) -> Any:
        cfg = self.cfg
        if stage == "streetview":
            return streetview_mod.open_source(cfg.streetview, cfg.http, self.redactor)
        if stage == "satellite":
            return satellite_mod.open_source(cfg.satellite, cfg.http, self.redactor)
        cache = self.store.work / "cache" / "describe"
        return describe_mod.Describer(cfg.describe, cfg.http, self.redactor, cache)

    def _summary(self) -> dict[str, Any]:
        """Every stage's counts and provider statistics so far."""
        seconds = 0.0 if self.idle else round(time.perf_counter() - self.started, 3)
        summary = dict(self.finished)
        for stage, counts in self.counts.items():
            part: dict[str, Any] = {"counts": dict(sorted(counts.items())), "seconds": seconds}
            source = self.sources.get(stage)
            if hasattr(source, "provider"):
                part["http"] = source.provider.stats.to_dict()
            if isinstance(source, describe_mod.Describer):
                part["describe"] = source.totals.to_dict()
            summary[stage] = part
        return summary

    async def _work(self, stage: str, point: Point) -> bool:
        """Run one stage on one sample (``False`` when it needed none); whatever goes wrong
        with that sample quarantines it and the stage goes on (only a refused key, a dead
        provider or a setting that fails every sample stops it)."""
        counts = self.counts[stage]
        state = self._state(stage, point)
        if state is not None:
            counts[state] += 1
            return False
        work: Callable[[Any, Point], Awaitable[str]] = getattr(self, f"_{stage}")
        if stage not in self.sources:  # unblocked by a retried quarantine upstream
            self.sources[stage] = self._open(stage)
        try:
            counts[await work(self.sources[stage], point)] += 1
            return True
        except PlanetlocError:
            raise
        except FetchFailed as err:
            reason, attempts = err.reason, err.attempts
        except BadResponse as err:
            reason, attempts = str(err), []
        except Exception as err:  # a provider's surprise costs one sample, not the stage
            reason, attempts = f"{type(err).__name__}: {err}", []
            log.info("%s: %s failed", stage, point.id, exc_info=True)
        counts["quarantined"] += 1
        self.store.quarantine(
            stage, point, self.redactor(reason), [self.redactor(a) for a in attempts]
        )
        log.warning("%s: quarantined %s: %s", stage, point.id, self.redactor(reason))
        return True

    async def run_stages(self, stages: list[str], points: list[Point]) -> dict[str, Any]:
        """Run fetch ``stages`` over ``points``, each sample flowing through them in order.

        Samples are pipelined: while one waits for the LVLM, others fetch imagery, so a
        build takes about as long as its slowest provider, not the sum of all of them. Each
        provider's own concurrency cap and rate limit still hold.
        """
        self.counts = {stage: Counter() for stage in stages}
        for stage in stages:
            for slug in sorted({p.region for p in points}):
                self.store.sweep(stage, slug)
            self.store.check_settings(stage, output_settings(self.cfg, stage))
        todo: list[Point] = []
        needed: set[str] = set()
        for point in points:
            states = [self._state(stage, point) for stage in stages]
            open_stages = {s for s, x in zip(stages, states, strict=True) if x in (None, "waiting")}
            if open_stages:
                todo.append(point)
                needed |= open_stages
            else:
                for stage, state in zip(stages, states, strict=True):
                    self.counts[stage][state] += 1
        # Open every source that may be needed up front, so a missing key fails at once.
        self.sources = {s: self._open(s) for s in stages if s in needed}
        queue = iter(todo)
        self.started = time.perf_counter()
        self.idle = not todo
        bar = tqdm(total=len(todo), desc="+".join(stages), unit="sample", disable=not self.progress)

        async def worker() -> None:
            for point in queue:
                for stage in stages:
                    worked = await self._work(stage, point)
                    # Spend is recorded as it happens: every description, else once a second.
                    self.ledger.record(self._summary, force=worked and stage == "describe")
                bar.update(1)

        width = 2 * sum(getattr(self.cfg, s).max_concurrency for s in self.sources) or 1
        tasks = [asyncio.ensure_future(worker()) for _ in range(min(len(todo), width))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            bar.close()
            for source in self.sources.values():
                await source.close()
            self.ledger.record(self._summary, force=True)
        summary = self._summary()
        return {stage: summary[stage] for stage in stages}

    async def run(self, slugs: list[str], stages: list[str]) -> dict[str, Any]:
        if "sample" in stages:
            counts = run_sample_stage(self.cfg, self.store, slugs)
            self.finished["sample"] = {"counts": counts, "seconds": 0.0}
            self.ledger.record(self._summary, force=True)
        fetch = [
            s for s in FETCH_STAGES if s in stages and (s != "streetview" or self.cfg.with_street)
        ]
        if fetch:
            points = [p for slug in slugs for p in self.store.read_points(slug)]
            await self.run_stages(fetch, points)
        return self._summary()


def run_shard(
    cfg: BuildConfig,
    out: str,
    slugs: list[str],
    stages: list[str],
    retry_quarantined: bool = False,
    progress: bool = True,
    run_id: str | None = None,
    shard: int = 0,
) -> dict[str, Any]:
    """Run ``stages`` over the regions ``slugs`` (the unit of work of every engine).

    With a ``run_id`` the shard's running summary is kept in that run's ledger folder.
    """
    store = WorkStore(out)
    runner = ShardRunner(
        cfg, Path(out), retry_quarantined, progress, ShardLedger(store, run_id, shard)
    )
    redacting = RedactingFilter(runner.redactor)
    log.addFilter(redacting)
    try:
        return asyncio.run(runner.run(slugs, stages))
    finally:
        log.removeFilter(redacting)


def selected_slugs(cfg: BuildConfig) -> list[str]:
    return [r.slug for r in resolve_regions(cfg.sample.regions)]
