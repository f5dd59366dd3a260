"""Physical signatures of training tiles, computed once and read per batch from disk.

A tile's colour, structure and texture signatures depend only on its pixels, yet training
meets every tile once per epoch; measuring them again each time costs about as much as the
image tower's forward pass on a CPU. The cache holds them addressed by a hash of the tile's
encoded bytes, so it is valid for any dataset holding the same images and is never mistaken
for another's:

    DIR/signatures-<settings>-<tiles>/hashes.npy       (N,) uint64 tile hashes, sorted
    DIR/signatures-<settings>-<tiles>/<branch>.npy     (N, D) float32 per signature
    DIR/signatures-<settings>-<tiles>/info.json        what it holds (written last)

:class:`Signatures` is what the data stream calls in its workers: it reads cached rows and
computes whatever is missing, so a cache that lacks a tile is slower, never wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planetloc.atomic import write_text
from planetloc.data.images import content_hash, decode_rgb
from planetloc.errors import PlanetlocError
from planetloc.model.physics import BRANCHES
from planetloc.model.signatures import SignatureConfig, physical_signatures

BATCH = 256


def _settings_key(cfg: SignatureConfig, image_size: int) -> str:
    text = json.dumps({"signature": asdict(cfg), "image_size": image_size, "v": 1}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Signatures:
    """Signatures of a batch of tiles: from the cache where it has them, computed otherwise.

    Picklable (it holds settings and a folder, and opens the cache lazily), so DataLoader
    workers started either way can use it.
    """

    def __init__(self, cfg: SignatureConfig, cache: str | os.PathLike[str] | None = None) -> None:
        self.cfg = cfg
        self.cache = None if cache is None else str(cache)
        self._arrays: dict[str, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "cache": self.cache, "_arrays": None}

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            folder = Path(self.cache)  # type: ignore[arg-type]
            self._arrays = {
                name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                for name in ("hashes", *BRANCHES)
            }
        return self._arrays

    def __call__(self, tiles: torch.Tensor, hashes: list[int]) -> dict[str, torch.Tensor]:
        if self.cache is None:
            return physical_signatures(tiles, self.cfg)
        arrays = self._open()
        wanted = np.asarray(hashes, dtype=np.uint64)
        pos = np.minimum(np.searchsorted(arrays["hashes"], wanted), len(arrays["hashes"]) - 1)
        found = np.asarray(arrays["hashes"][pos]) == wanted
        out = {
            b: torch.from_numpy(np.asarray(arrays[b][np.where(found, pos, 0)], dtype=np.float32))
            for b in BRANCHES
        }
        if not found.all():
            missing = np.flatnonzero(~found)
            fresh = physical_signatures(tiles[torch.from_numpy(missing)], self.cfg)
            for b in BRANCHES:
                out[b][torch.from_numpy(missing)] = fresh[b]
        return out


def _readable(source: Any, part: Any, split: str) -> Iterator[Any]:
    """The part's samples of ``split`` up to the first damaged one: the training stream, not
    the cache, reports (or skips) bad samples; a tile the cache lacks is measured in place."""
    try:
        for sample in source.iter_part(part):
            if sample.record.get("split") == split:
                yield sample
    except PlanetlocError:
        return


def _part_signatures(args: tuple[Any, Any, str, int, SignatureConfig, Path]) -> Path:
    """Measure one part's tiles, ``BATCH`` at a time, into one file: what a worker holds is
    one batch of pixels and one part's signatures, whatever the dataset's size."""
    source, part, split, size, cfg, out = args
    torch.set_num_threads(1)
    hashes: list[int] = []
    chunks: dict[str, list[np.ndarray]] = {b: [] for b in BRANCHES}
    tiles: list[np.ndarray] = []

    def measure() -> None:
        batch = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).contiguous()
        sigs = physical_signatures(batch, cfg)
        for b in BRANCHES:
            chunks[b].append(sigs[b].numpy().astype(np.float32))
        tiles.clear()

    for sample in _readable(source, part, split):
        try:
            tile = decode_rgb(sample.sat, size, source=sample.source)
        except PlanetlocError:
            continue  # the stream reports it; the cache only lacks it
        hashes.append(content_hash(sample.sat))
        tiles.append(tile)
        if len(tiles) == BATCH:
            measure()
    if tiles:
        measure()
    arrays = {b: np.concatenate(c) for b, c in chunks.items() if c}
    np.savez(out, hashes=np.asarray(hashes, dtype=np.uint64), **arrays)
    return out


def _part_hashes(args: tuple[Any, Any, str]) -> np.ndarray:
    source, part, split = args
    hashes = [content_hash(s.sat) for s in _readable(source, part, split)]
    return np.asarray(hashes, dtype=np.uint64)


def _map(fn: Any, jobs: list[Any], workers: int) -> list[Any]:
    if workers > 1 and len(jobs) > 1:
        with get_context("fork").Pool(min(workers, len(jobs))) as pool:
            return pool.map(fn, jobs)
    return [fn(job) for job in jobs]


def _holds(folder: Path, hashes: np.ndarray) -> bool:
    if not (folder / "info.json").is_file():
        return False
    have = np.load(folder / "hashes.npy", mmap_mode="r", allow_pickle=False)
    pos = np.minimum(np.searchsorted(have, hashes), len(have) - 1)
    return bool(len(have)) and bool(np.array_equal(np.asarray(have[pos]), hashes))


def build_cache(
    root: str | os.PathLike[str],
    source: Any,
    split: str,
    image_size: int,
    cfg: SignatureConfig,
    *,
    workers: int = 1,
) -> Path:
    """The cache of ``split``'s tiles under ``root``: an existing one holding them all, or a
    new one (tiles are hashed first, which is cheap; signatures only measured if needed)."""
    root = Path(root)
    settings = _settings_key(cfg, image_size)
    parts = source.parts(split)
    hashed = _map(_part_hashes, [(source, part, split) for part in parts], workers)
    hashes = np.unique(np.concatenate([*hashed, np.zeros(0, dtype=np.uint64)]))
    digest = hashlib.sha256(hashes.tobytes()).hexdigest()[:12]
    folder = root / f"signatures-{settings}-{digest}"
    candidates = sorted(root.glob(f"signatures-{settings}-*")) if root.is_dir() else []
    if (folder / "info.json").is_file():
        return folder  # built for exactly these tiles (its name is their digest)
    for found in candidates:
        if _holds(found, hashes):
            return found
    tmp = root / f".signatures-{settings}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        jobs = [
            (source, part, split, image_size, cfg, tmp / f"part-{i}.npz")
            for i, part in enumerate(parts)
        ]
        files = _map(_part_signatures, jobs, workers)
        # Only measured tiles are stored (an undecodable one is left to the stream); parts
        # are copied in one at a time into memory-mapped arrays, so the parent never holds
        # the signatures of the whole dataset.
        stored = np.unique(
            np.concatenate([*(np.load(f)["hashes"] for f in files), np.zeros(0, np.uint64)])
        )
        np.save(tmp / "hashes.npy", stored)
        columns: dict[str, np.ndarray] = {}
        for f in files:
            with np.load(f) as part:
                if not len(part["hashes"]):
                    continue
                pos = np.searchsorted(stored, part["hashes"])
                for b in BRANCHES:
                    if b not in columns:
                        columns[b] = np.lib.format.open_memmap(
                            tmp / f"{b}.npy", "w+", np.float32, (len(stored), part[b].shape[1])
                        )
                    columns[b][pos] = part[b]
            f.unlink()
        for b in BRANCHES:
            if b in columns:
                columns[b].flush()
            else:
                np.save(tmp / f"{b}.npy", np.zeros((0, 1), dtype=np.float32))
        columns.clear()
        info = {"tiles": len(stored), "settings": settings}
        write_text(tmp / "info.json", json.dumps(info) + "\n")
        with contextlib.suppress(OSError):  # another process finished it first
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
