"""The build's work folder: one file per sample and stage, written atomically.

A sample is done for a stage when its record (``<id>.json``) exists; the record is written
after the image it describes, so a kill at any moment leaves either a finished sample or
nothing (stale temporary files are swept when the region is next opened). A sample that
keeps failing gets a quarantine file with its reasons instead, and is skipped until asked
otherwise.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from planetloc.atomic import write_bytes, write_text
from planetloc.builder.sampling import Point
from planetloc.errors import PlanetlocError

STAGES = ("sample", "streetview", "satellite", "describe", "write")
IMAGE_STAGES = ("streetview", "satellite")


class WorkStore:
    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.work = self.out / "work"

    # points -------------------------------------------------------------------------------
    def points_path(self, slug: str) -> Path:
        return self.work / "points" / f"{slug}.jsonl"

    def write_points(self, slug: str, points: list[Point]) -> None:
        lines = "".join(json.dumps(p.to_dict(), sort_keys=True) + "\n" for p in points)
        write_text(self.points_path(slug), lines)

    def has_points(self, slug: str) -> bool:
        return self.points_path(slug).is_file()

    def read_points(self, slug: str) -> list[Point]:
        path = self.points_path(slug)
        if not path.is_file():
            raise PlanetlocError(
                f"{path}: no sampled points for region {slug!r}; run `planetloc build sample`"
            )
        return [Point(**json.loads(line)) for line in path.read_text("utf-8").splitlines()]

    # settings a stage's outputs depend on ------------------------------------------------------
    def check_settings(self, stage: str, settings: dict[str, Any]) -> None:
        """Refuse to mix outputs made with different settings in one work folder.

        The first run of a stage records the settings its outputs depend on; a later run
        with different ones stops with the first difference instead of silently building a
        dataset of mixed tile sizes, prompts or sampling rules.
        """
        path = self.work / stage / "settings.json"
        if not path.is_file():
            write_text(path, json.dumps(settings, indent=1, sort_keys=True))
            return
        recorded = json.loads(path.read_text("utf-8"))
        for key in sorted(set(recorded) | set(settings)):
            if recorded.get(key) != settings.get(key):
                raise PlanetlocError(
                    f"{path}: {stage} outputs here were made with {key} = "
                    f"{recorded.get(key)!r}, not {settings.get(key)!r}; use a new --out "
                    f"or delete {self.work / stage}"
                )

    # per-sample outputs ---------------------------------------------------------------------
    def stage_dir(self, stage: str, slug: str) -> Path:
        return self.work / stage / slug

    def record_path(self, stage: str, slug: str, sid: str) -> Path:
        return self.stage_dir(stage, slug) / f"{sid}.json"

    def image_path(self, stage: str, slug: str, sid: str) -> Path:
        return self.stage_dir(stage, slug) / f"{sid}.jpg"

    def read_record(self, stage: str, slug: str, sid: str) -> dict[str, Any] | None:
        path = self.record_path(stage, slug, sid)
        if not path.is_file():
            return None
        return json.loads(path.read_text("utf-8"))

    def save(
        self, stage: str, slug: str, sid: str, record: dict[str, Any], image: bytes | None = None
    ) -> None:
        if image is not None:
            write_bytes(self.image_path(stage, slug, sid), image)
        write_text(self.record_path(stage, slug, sid), json.dumps(record, sort_keys=True))
        self.quarantine_path(stage, sid).unlink(missing_ok=True)

    def sweep(self, stage: str, slug: str) -> int:
        """Remove temporary files a killed run left in a region's stage folder."""
        folder = self.stage_dir(stage, slug)
        stale = list(folder.glob(".*.tmp")) if folder.is_dir() else []
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    # quarantine -----------------------------------------------------------------------------
    def quarantine_path(self, stage: str, sid: str) -> Path:
        return self.work / "quarantine" / stage / f"{sid}.json"

    def quarantine(
        self, stage: str, point: Point, reason: str, attempts: list[str] | None = None
    ) -> None:
        record = {
            "id": point.id,
            "region": point.region,
            "stage": stage,
            "reason": reason,
            "attempts": attempts or [],
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_text(self.quarantine_path(stage, point.id), json.dumps(record, sort_keys=True))

    def is_quarantined(self, stage: str, sid: str) -> bool:
        return self.quarantine_path(stage, sid).is_file()

    def quarantined(self) -> list[dict[str, Any]]:
        root = self.work / "quarantine"
        if not root.is_dir():
            return []
        return [json.loads(p.read_text("utf-8")) for p in sorted(root.glob("*/*.json"))]
