"""Stage 5: the finished dataset - images, a manifest in the sample schema, optional
WebDataset shards, and splits.

Splits: a deterministic ``unseen_fraction`` of regions is held out whole (``test_unseen``);
in the other regions each sample falls in ``test``/``val``/``train`` by a hash of its id, so
its split never depends on which other samples exist. Samples without a description (builds
with ``streetview.provider: none``) become ``gallery`` tiles. The intercontinental subsets
are continent groups of the world-level test split (see :mod:`planetloc.eval.protocols`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

from planetloc.atomic import atomic_path, write_text
from planetloc.builder.config import BuildConfig
from planetloc.builder.store import WorkStore
from planetloc.data.manifest import write_manifest
from planetloc.data.schema import Sample
from planetloc.errors import PlanetlocError
from planetloc.stable_hash import stable_unit


def held_out_regions(slugs: list[str], fraction: float, seed: int) -> set[str]:
    count = int(round(len(slugs) * fraction))
    ranked = sorted(slugs, key=lambda s: stable_unit("unseen", seed, s))
    return set(ranked[:count])


def _link(src: Path, dst: Path) -> None:
    """Hard-link (or copy) ``src`` to ``dst`` atomically, unless it is already there."""
    same_size = dst.is_file() and dst.stat().st_size == src.stat().st_size
    if same_size and (os.path.samefile(src, dst) or dst.read_bytes() == src.read_bytes()):
        return
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            tmp.write_bytes(src.read_bytes())


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # identical bytes on every run and engine
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(samples: list[Sample], root: Path, shard_size: int) -> dict[str, int]:
    """``<split>-NNNNNN.tar`` shards; keys are sample ids, members ``sat.jpg``/``street.jpg``/
    ``txt``/``json``."""
    folder = root / "webdataset"
    shards: dict[str, int] = {}
    wanted: set[str] = set()
    by_split: dict[str, list[Sample]] = {}
    for s in samples:
        by_split.setdefault(s.split, []).append(s)
    index_path = folder / "index.json"
    recorded = json.loads(index_path.read_text("utf-8")) if index_path.is_file() else {}
    fingerprints: dict[str, str] = {}
    for split, members in sorted(by_split.items()):
        members.sort(key=lambda s: s.id)
        for index, start in enumerate(range(0, len(members), shard_size)):
            name = f"{split}-{index:06d}.tar"
            wanted.add(name)
            chunk = members[start : start + shard_size]
            rows = json.dumps([s.to_dict() for s in chunk], sort_keys=True, ensure_ascii=False)
            fingerprints[name] = hashlib.sha256(rows.encode("utf-8")).hexdigest()
            if recorded.get(name) == fingerprints[name] and (folder / name).is_file():
                continue  # unchanged since the last write: a rerun rewrites nothing
            with (
                atomic_path(folder / name) as tmp,
                tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar,
            ):
                for s in chunk:
                    key = s.id.replace(".", "_")
                    _tar_add(tar, f"{key}.sat.jpg", (root / s.sat_path).read_bytes())
                    if s.street_path:
                        _tar_add(tar, f"{key}.street.jpg", (root / s.street_path).read_bytes())
                    _tar_add(tar, f"{key}.txt", s.text.encode("utf-8"))
                    record = json.dumps(s.to_dict(), sort_keys=True, ensure_ascii=False)
                    _tar_add(tar, f"{key}.json", record.encode("utf-8"))
        shards[split] = index + 1
    for stale in folder.glob("*.tar"):
        if stale.name not in wanted:
            stale.unlink()
    write_text(index_path, json.dumps(fingerprints, indent=1, sort_keys=True))
    return shards


def write_dataset(
    cfg: BuildConfig, out: str | Path, slugs: list[str], allow_partial: bool = False
) -> dict[str, Any]:
    """Assemble ``<out>/dataset`` from the work folder; returns the dataset summary."""
    store = WorkStore(out)
    root = Path(out) / "dataset"
    with_text = cfg.with_street
    unseen = held_out_regions(slugs, cfg.write.unseen_fraction, cfg.write.seed)
    samples: list[Sample] = []
    states: Counter[str] = Counter()
    pending: list[str] = []
    for slug in slugs:
        for point in store.read_points(slug):
            stages = ["satellite", "describe"] + (["streetview"] if with_text else [])
            if any(store.is_quarantined(stage, point.id) for stage in stages):
                states["quarantined"] += 1
                continue
            street = store.read_record("streetview", slug, point.id) if with_text else None
            if with_text and street is not None and street["status"] != "ok":
                states["no_street_photo"] += 1
                continue
            sat = store.read_record("satellite", slug, point.id)
            text = store.read_record("describe", slug, point.id) if with_text else None
            if sat is not None and sat["status"] != "ok":
                states["no_satellite"] += 1
                continue
            if sat is None or (with_text and (street is None or text is None)):
                states["pending"] += 1
                pending.append(point.id)
                continue
            sat_rel = f"satellite/{slug}/{point.id}.jpg"
            _link(store.image_path("satellite", slug, point.id), root / sat_rel)
            street_rel = None
            meta: dict[str, Any] = {
                "point": [point.lat, point.lon],
                "satellite": sat["meta"],
            }
            if with_text:
                street_rel = f"streetview/{slug}/{point.id}.jpg"
                _link(store.image_path("streetview", slug, point.id), root / street_rel)
                meta["street"] = {"distance_m": street["distance_m"], **street["meta"]}
                meta["lvlm"] = text["model"]
                split = _split_of(point.id, slug in unseen, cfg)
            else:
                split = "gallery"
            samples.append(
                Sample(
                    id=point.id,
                    text=text["text"] if text else "",
                    sat_path=sat_rel,
                    lat=sat["lat"],
                    lon=sat["lon"],
                    region=slug,
                    continent=point.continent,
                    split=split,
                    street_path=street_rel,
                    meta=meta,
                )
            )
            states["written"] += 1
    if pending and not allow_partial:
        raise PlanetlocError(
            f"{len(pending)} samples are unfinished (first: {pending[0]}); run "
            "`planetloc build run` to finish them, or write with --allow-partial"
        )
    if not samples:
        raise PlanetlocError(f"{out}: no finished samples to write")
    manifest = write_manifest(samples, root / cfg.write.manifest)
    splits = Counter(s.split for s in samples)
    summary: dict[str, Any] = {
        "manifest": manifest.name,
        "samples": len(samples),
        "states": dict(sorted(states.items())),
        "splits": dict(sorted(splits.items())),
        "unseen_regions": sorted(unseen),
        "regions": slugs,
    }
    if cfg.write.webdataset:
        summary["webdataset_shards"] = write_webdataset(samples, root, cfg.write.shard_size)
    write_text(
        root / "build.json",
        json.dumps({"summary": summary, "config": cfg.to_dict()}, indent=1, sort_keys=True),
    )
    return summary


def _split_of(sid: str, unseen: bool, cfg: BuildConfig) -> str:
    if unseen:
        return "test_unseen"
    u = stable_unit("split", cfg.write.seed, sid)
    if u < cfg.write.test_fraction:
        return "test"
    if u < cfg.write.test_fraction + cfg.write.val_fraction:
        return "val"
    return "train"
