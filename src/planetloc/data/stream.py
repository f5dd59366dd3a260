"""Stream training samples from WebDataset shards or a manifest at constant memory.

Samples are read and decoded in DataLoader worker processes; nothing holds the dataset.
Each process (DDP rank) and each of its workers reads its own share of the *parts* (shards,
or blocks of manifest rows): in epoch e the parts are permuted by (seed, e) and dealt out
round-robin; when there are fewer parts than readers, every reader walks all parts and keeps
every n-th sample instead, so no reader starves. A seeded shuffle buffer (webdataset's)
mixes samples across parts. Reading, shuffling and skipping work on undecoded bytes; images
are decoded only for the samples that are yielded.

Exact resume: the stream of each worker is a pure function of (seed, rank, worker, readers),
and DataLoader takes batch i from worker i mod W. A run resumed at step k therefore skips, in
each worker, the samples of the batches that worker produced before step k, and yields the
same batches as the uninterrupted run.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from planetloc.data.images import content_hash, decode_rgb, read_image_bytes
from planetloc.data.informal import informal
from planetloc.data.manifest import find_manifest, parquet_record
from planetloc.data.schema import check_record
from planetloc.data.shards import (
    DAMAGED,
    RawSample,
    find_shards,
    iter_shard,
    sample_key,
    shard_split_counts,
)
from planetloc.errors import PlanetlocError
from planetloc.stable_hash import stable_int

MANIFEST_BLOCK_ROWS = 1024


@dataclass(frozen=True)
class StreamSpec:
    """How one process reads its share of the training stream."""

    seed: int
    batch_size: int  # per process
    rank: int = 0
    world_size: int = 1
    workers: int = 0
    shuffle_buffer: int = 2048
    split: str = "train"
    image_size: int = 128
    street_size: tuple[int, int] | None = None  # (H, W): decode street views at this size
    street_align: str = "heading"  # "heading": as taken; "north": rolled so north is centred
    alt_text_prob: float = 0.0  # chance of training on another phrasing of the same scene
    exclude_styles: tuple[str, ...] = ()  # phrasings in these styles (meta) are never read
    informal_prob: float = 0.0  # chance of reading a text's informal-register rewrite
    neighbours: int = 0  # >1: batches made of groups of this many geographic neighbours
    on_bad_sample: str = "fail"  # "fail" or "skip" (skipped samples are counted)
    # How DataLoader workers start: "fork" (fast), or "spawn" once this process has initialised
    # CUDA, which forked workers cannot share safely.
    start_method: str = "fork"
    # Pixel statistics computed per batch in the workers, e.g. the model's physical signatures:
    # ((B, 3, H, W) uint8 tiles, their content hashes) -> {name: (B, D) tensor}.
    signatures: Callable[[torch.Tensor, list[int]], dict[str, torch.Tensor]] | None = None


class Source(ABC):
    """Parts of a dataset that can be read independently, each yielding raw samples."""

    description: str

    @abstractmethod
    def parts(self, split: str) -> list[Any]:
        """The parts holding at least one sample of ``split``."""

    @abstractmethod
    def iter_part(self, part: Any) -> Iterator[RawSample]:
        """The samples of one part, in order."""


class ShardSource(Source):
    """A dataset stored as WebDataset shards: one part per shard."""

    def __init__(self, paths: list[Path]) -> None:
        if not paths:
            raise PlanetlocError("no shards to read")
        self.paths = [Path(p) for p in paths]
        self.description = f"{len(self.paths)} shards in {self.paths[0].parent}"

    def parts(self, split: str) -> list[Any]:
        counts = shard_split_counts(self.paths)
        held = [p for p in self.paths if counts[p.name].get(split, 0) or DAMAGED in counts[p.name]]
        return held

    def iter_part(self, part: Any) -> Iterator[RawSample]:
        return iter_shard(part)


class ManifestSource(Source):
    """A manifest with images beside it: one part per block of rows.

    JSONL parts are byte ranges found by one pass over the file (memory: one offset per
    block); Parquet parts are ranges of rows read by batches. The same pass counts each
    block's splits, so no reader is dealt blocks without a sample of its split.
    """

    def __init__(self, path: Path, *, block_rows: int = MANIFEST_BLOCK_ROWS) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise PlanetlocError(f"{self.path}: manifest not found")
        if self.path.suffix not in (".jsonl", ".parquet"):
            raise PlanetlocError(f"{self.path}: a manifest is a .jsonl or .parquet file")
        self.root = self.path.parent
        self.block_rows = block_rows
        self.description = str(self.path)
        self._blocks, self._splits = self._find_blocks()

    def _find_blocks(self) -> tuple[list[tuple[int, int, int]], list[set[str]]]:
        """(byte offset or first row, first line/row number, rows) of every block, and the
        splits each block holds."""
        blocks: list[tuple[int, int, int]] = []
        splits: list[set[str]] = []
        if self.path.suffix == ".jsonl":
            with open(self.path, "rb") as fh:
                offset, count, start, first = 0, 0, 0, 1
                seen: set[str] = set()
                for lineno, line in enumerate(fh, start=1):
                    if count == self.block_rows:
                        blocks.append((start, first, count))
                        splits.append(seen)
                        start, first, count, seen = offset, lineno, 0, set()
                    offset += len(line)
                    count += 1
                    seen.add(_split_of(line))
                if count:
                    blocks.append((start, first, count))
                    splits.append(seen)
            return blocks, splits
        import pyarrow.parquet as pq

        column = pq.read_table(self.path, columns=["split"])["split"].to_pylist()
        for s in range(0, len(column), self.block_rows):
            blocks.append((s, s, min(self.block_rows, len(column) - s)))
            splits.append(set(column[s : s + self.block_rows]))
        return blocks, splits

    def parts(self, split: str) -> list[Any]:
        return [b for b, held in zip(self._blocks, self._splits, strict=True) if split in held]

    def _rows(
        self, part: tuple[int, int, int]
    ) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
        start, first, count = part
        if self.path.suffix == ".jsonl":
            with open(self.path, "rb") as fh:
                fh.seek(start)
                for lineno in range(first, first + count):
                    raw = fh.readline()
                    if not raw.strip():
                        continue
                    try:
                        record = json.loads(raw.decode("utf-8"))
                    except (UnicodeDecodeError, json.JSONDecodeError) as err:
                        yield lineno, None, f"invalid JSON ({err})"
                        continue
                    yield lineno, record, None if isinstance(record, dict) else "not an object"
            return
        yield from self._parquet_rows(start, count)

    def _parquet_rows(
        self, start: int, count: int
    ) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path)
        groups, first, seen = [], None, 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if seen + n > start and seen < start + count:
                groups.append(g)
                first = seen if first is None else first
            seen += n
        table = pf.read_row_groups(groups).slice(start - (first or 0), count)
        for offset, row in enumerate(table.to_pylist()):
            yield (start + offset, *parquet_record(row))

    def iter_part(self, part: Any) -> Iterator[RawSample]:
        for row, record, problem in self._rows(part):
            where = f"{self.path}: {'line' if self.path.suffix == '.jsonl' else 'row'} {row}"
            if problem is None:
                _, problem = check_record(record)  # type: ignore[arg-type]
            if problem is not None:
                raise PlanetlocError(f"{where}: {problem}")
            assert record is not None
            sat = read_image_bytes(self.root / record["sat_path"])
            street = (
                read_image_bytes(self.root / record["street_path"])
                if record.get("street_path")
                else None
            )
            yield RawSample(
                key=sample_key(record["id"]), record=record, sat=sat, street=street, source=where
            )


def _split_of(line: bytes) -> str:
    """The split of a JSONL row ("" when unreadable: the reader reports it in place)."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return ""
    return record.get("split", "") if isinstance(record, dict) else ""


def open_source(data: str | Path) -> Source:
    """Shards when the dataset has them (or ``data`` names them), else its manifest."""
    shards = find_shards(data)
    if shards:
        return ShardSource(shards)
    return ManifestSource(find_manifest(data))


def _batches_before(step: int, worker: int, workers: int) -> int:
    """How many batches worker ``worker`` produced for steps 0..step-1 (DataLoader order)."""
    if step <= worker:
        return 0
    return (step - worker - 1) // workers + 1


@dataclass
class _Counter:
    bad: list[str] = field(default_factory=list)


class TrainStream(IterableDataset):
    """The endless, deterministic, resumable stream of one process's training samples."""

    def __init__(self, source: Source, spec: StreamSpec, *, start_step: int = 0) -> None:
        super().__init__()
        if spec.on_bad_sample not in ("fail", "skip"):
            raise PlanetlocError(f"on_bad_sample must be fail or skip, got {spec.on_bad_sample!r}")
        self.source = source
        self.spec = spec
        self.start_step = start_step
        self.parts = source.parts(spec.split)
        if not self.parts:
            raise PlanetlocError(f"{source.description}: no {spec.split!r} samples")

    # ---------------------------------------------------------------- raw, undecoded stream
    def _reader(self) -> tuple[int, int, int, int]:
        """(reader, readers, worker, workers): who this stream is in the original run.

        DataLoader takes batch j from worker j mod W, and a resumed loader starts at worker 0
        although the original run's next batch came from worker ``start_step`` mod W; so
        this process's worker w plays the part of original worker (w + start_step) mod W.
        """
        info = get_worker_info()
        slot, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        worker = (slot + self.start_step) % workers
        readers = self.spec.world_size * workers
        return self.spec.rank * workers + worker, readers, worker, workers

    def _raw(self, reader: int, readers: int, counter: _Counter) -> Iterator[RawSample]:
        spec = self.spec
        for epoch in itertools.count():
            order = list(self.parts)
            random.Random(stable_int(spec.seed, "parts", epoch)).shuffle(order)
            by_part = len(order) >= readers
            mine = order[reader::readers] if by_part else order
            yielded = 0
            seen = 0
            for part in mine:
                for sample in self._safe(part, counter):
                    if sample.record.get("split") != spec.split:
                        continue
                    seen += 1
                    if not by_part and (seen - 1) % readers != reader:
                        continue
                    yielded += 1
                    yield sample
            if yielded == 0 and epoch == 0:
                raise PlanetlocError(
                    f"{self.source.description}: no {spec.split!r} samples for reader "
                    f"{reader + 1} of {readers} (fewer samples than processes x workers?)"
                )

    def _safe(self, part: Any, counter: _Counter) -> Iterator[RawSample]:
        it = self.source.iter_part(part)
        while True:
            try:
                sample = next(it)
            except StopIteration:
                return
            except PlanetlocError as err:
                if self.spec.on_bad_sample == "fail":
                    raise
                counter.bad.append(str(err))
                if "truncated or damaged shard" in str(err) or "cannot open shard" in str(err):
                    return  # the rest of this shard cannot be read
                continue
            yield sample

    def _grouped(self, samples: Iterator[RawSample], rng: random.Random) -> Iterator[RawSample]:
        """Geographic hard negatives: emit an anchor and its nearest buffered neighbours."""
        size, group = max(self.spec.shuffle_buffer, 4 * self.spec.neighbours), self.spec.neighbours
        buf: list[RawSample] = []
        for sample in samples:
            buf.append(sample)
            if len(buf) < size:
                continue
            anchor = buf.pop(rng.randrange(len(buf)))
            lat = np.radians([s.record["lat"] for s in buf])
            lon = np.radians([s.record["lon"] for s in buf])
            a_lat, a_lon = math.radians(anchor.record["lat"]), math.radians(anchor.record["lon"])
            hav = (
                np.sin((lat - a_lat) / 2) ** 2
                + np.cos(lat) * math.cos(a_lat) * np.sin((lon - a_lon) / 2) ** 2
            )
            near = np.argsort(hav, kind="stable")[: group - 1]
            yield anchor
            for j in sorted(near.tolist(), reverse=True):
                yield buf.pop(j)

    # ---------------------------------------------------------------- decoded stream
    def __iter__(self) -> Iterator[dict[str, Any]]:
        spec = self.spec
        reader, readers, worker, workers = self._reader()
        counter = _Counter()
        rng = random.Random(stable_int(spec.seed, "shuffle", spec.rank, worker, readers))
        from webdataset.filters import _shuffle

        raw = self._raw(reader, readers, counter)
        mixed = _shuffle(raw, spec.shuffle_buffer, spec.shuffle_buffer, rng=rng)
        if spec.neighbours > 1:
            mixed = self._grouped(mixed, rng)
        skip = _batches_before(self.start_step, worker, workers) * spec.batch_size
        text_rng = random.Random(stable_int(spec.seed, "text", spec.rank, worker, readers))
        # Its own generator, so that rewriting never changes which phrasing a sample reads.
        informal_rng = random.Random(stable_int(spec.seed, "informal", spec.rank, worker, readers))
        for index, sample in enumerate(mixed):
            # The text draw happens for skipped samples too, so a resumed stream stays in step.
            text, text_error = "", None
            try:
                text = self._text(sample, text_rng, informal_rng)
            except PlanetlocError as err:
                text_error = err
            if index < skip:
                continue
            try:
                if text_error is not None:
                    raise text_error
                item = self._decode(sample, text)
            except PlanetlocError as err:
                if spec.on_bad_sample == "fail":
                    raise
                counter.bad.append(str(err))
                continue
            item["bad"], counter.bad = counter.bad, []
            yield item

    def _text(
        self, sample: RawSample, rng: random.Random, informal_rng: random.Random | None = None
    ) -> str:
        """The text a sample is read with: its own or (with ``alt_text_prob``) another of its
        phrasings outside the excluded styles, rewritten informally with ``informal_prob``."""
        spec = self.spec
        own, others = phrasings(sample.record, spec.exclude_styles)
        draw = rng.random()
        if own is None:
            if not others:
                style = (sample.record.get("meta") or {}).get("style")
                raise PlanetlocError(
                    f"{sample.source} (key {sample.key!r}): its text is in an excluded style "
                    f"({style!r}) and it has no other phrasing in meta.alt_texts"
                )
            text = others[int(draw * len(others)) % len(others)]
        elif others and draw < spec.alt_text_prob:
            options = [own, *others]
            text = options[int(draw / spec.alt_text_prob * len(options)) % len(options)]
        else:
            text = own
        chance = spec.informal_prob
        if chance and informal_rng is not None and informal_rng.random() < chance:
            text = informal(text)
        return text

    def _decode(self, sample: RawSample, text: str) -> dict[str, Any]:
        spec = self.spec
        rec = sample.record
        where = f"{sample.source} (key {sample.key!r})"
        tile = decode_rgb(sample.sat, spec.image_size, source=where)
        item: dict[str, Any] = {
            "key": sample.key,
            "hash": content_hash(sample.sat),
            "text": text,
            "tile": torch.from_numpy(tile).permute(2, 0, 1).contiguous(),
            "lat": float(rec["lat"]),
            "lon": float(rec["lon"]),
            "heading": float((rec.get("meta") or {}).get("heading_deg", float("nan"))),
        }
        if spec.street_size is not None:
            if sample.street is None:
                raise PlanetlocError(
                    f"{where}: no street view, but the run trains on street images"
                )
            street = decode_rgb(sample.street, spec.street_size, source=where)
            if spec.street_align == "north":
                street = north_aligned(street, item["heading"], where)
            item["street"] = torch.from_numpy(street).permute(2, 0, 1).contiguous()
        return item


def north_aligned(panorama: np.ndarray, heading_deg: float, where: str = "") -> np.ndarray:
    """Roll a 360-degree panorama whose centre looks along ``heading_deg`` so north is centred."""
    if not math.isfinite(heading_deg):
        raise PlanetlocError(f"{where}: north alignment needs meta.heading_deg")
    width = panorama.shape[1]
    shift = int(round(heading_deg / 360.0 * width))
    return np.roll(panorama, shift, axis=1)


class Collate:
    """Batch builder run in the workers; also computes the tiles' signatures there.

    A class rather than a closure so that it pickles: workers started with ``spawn``
    (needed once the training process has initialised CUDA) receive it by pickling.
    """

    def __init__(
        self,
        signatures: Callable[[torch.Tensor, list[int]], dict[str, torch.Tensor]] | None = None,
    ) -> None:
        self.signatures = signatures

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keys": [i["key"] for i in items],
            "texts": [i["text"] for i in items],
            "tiles": torch.stack([i["tile"] for i in items]),
            "lat": torch.tensor([i["lat"] for i in items], dtype=torch.float64),
            "lon": torch.tensor([i["lon"] for i in items], dtype=torch.float64),
            "heading": torch.tensor([i["heading"] for i in items], dtype=torch.float32),
            "bad": [b for i in items for b in i["bad"]],
        }
        if "street" in items[0]:
            out["street"] = torch.stack([i["street"] for i in items])
        if self.signatures is not None:
            out["signatures"] = self.signatures(out["tiles"], [i["hash"] for i in items])
        return out


def _worker_init(_: int) -> None:
    # Workers decode and compute signatures; one thread each keeps them off the trainer's cores.
    torch.set_num_threads(1)


def train_loader(source: Source, spec: StreamSpec, *, start_step: int = 0) -> DataLoader:
    """A DataLoader yielding ``spec.batch_size`` samples per step, from step ``start_step``."""
    stream = TrainStream(source, spec, start_step=start_step)
    return DataLoader(
        stream,
        batch_size=spec.batch_size,
        num_workers=spec.workers,
        collate_fn=Collate(spec.signatures),
        worker_init_fn=_worker_init if spec.workers else None,
        prefetch_factor=4 if spec.workers else None,
        persistent_workers=False,
        multiprocessing_context=spec.start_method if spec.workers else None,
        # Its own generator: making an iterator must not draw from the global one, or a
        # resumed run (which restores that generator) would drift from the original.
        generator=torch.Generator().manual_seed(spec.seed),
    )


def check_styles(source: Source, names: tuple[str, ...], *, max_samples: int = 1000) -> None:
    """Refuse a style name (``exclude_styles``) that no phrasing of the training samples read
    is written in: a misspelt name would exclude nothing, silently. Up to ``max_samples``
    training samples are read, the first ones of parts spread evenly over the whole source
    (data stored region by region, or one style after another, is sampled over its extent)."""
    if not names:
        return
    parts = source.parts("train")
    parts = parts[:: max(1, -(-len(parts) // max_samples))]
    per_part = max(1, -(-max_samples // max(1, len(parts))))
    seen: set[str] = set()
    count = 0
    for part in parts:
        taken = 0
        try:
            for sample in source.iter_part(part):
                record = sample.record or {}
                if record.get("split") != "train":
                    continue
                meta = record.get("meta") or {}
                if style := meta.get("style"):
                    seen.add(style)
                seen.update(meta.get("alt_texts") or {})
                count, taken = count + 1, taken + 1
                if taken >= per_part or count >= max_samples:
                    break
        except PlanetlocError:
            continue  # damage is the training stream's to report or skip, by its own rules
        if count >= max_samples:
            break
    unknown = [n for n in names if n not in seen]
    if unknown and count:  # with nothing readable, the training stream says why
        styles = ", ".join(sorted(seen)) or "none named (no meta.style or meta.alt_texts)"
        raise PlanetlocError(
            f"exclude_styles: no phrasing of {count} training samples read across "
            f"{source.description} is in style {', '.join(map(repr, unknown))}; "
            f"their styles: {styles}"
        )


def phrasings(
    record: dict[str, Any], exclude_styles: tuple[str, ...] = ()
) -> tuple[str | None, list[str]]:
    """A sample's own text (None when it is written in an excluded style, ``meta.style``)
    and its other phrasings (``meta.alt_texts``, in style order) outside excluded styles."""
    meta = record.get("meta") or {}
    own = record.get("text", "")
    if exclude_styles and meta.get("style") in exclude_styles:
        own = None
    alternatives = meta.get("alt_texts") or {}
    others = [v for k, v in sorted(alternatives.items()) if k not in exclude_styles]
    return own, others
