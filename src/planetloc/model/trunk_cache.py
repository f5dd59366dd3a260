"""On-disk cache of a frozen text trunk's outputs, addressed by text content.

A frozen pretrained trunk (the CPU default) gives every text the same token features in every
step and every run, so they are computed once and kept on disk, never in memory:

    DIR/trunk-<key>-<texts>/tokens.f16     (T, D) float16 token features, text after text
    DIR/trunk-<key>-<texts>/offsets.npy    (N,) int64 each text's first token row (lengths.npy)
    DIR/trunk-<key>-<texts>/pooled.npy     (N, P) float32 pooled features
    DIR/trunk-<key>-<texts>/truncated.npy  (N,) bool, cut at max_tokens
    DIR/trunk-<key>-<texts>/hashes.npy     (N,) uint64 text hashes, sorted (rows.npy: their rows)
    DIR/trunk-<key>-<texts>/info.json      count, widths, key (written last)

A batch reads its rows with explicit file reads, so the resident memory of training does not
grow with the number of texts. The key digests the trunk's weights and the tokenisation
settings: another trunk, length limit or tokenizer never reads these features.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from planetloc.atomic import write_text
from planetloc.errors import PlanetlocError
from planetloc.model.towers import TextOutput

CHUNK_TEXTS = 2048


def text_hash(text: str) -> int:
    """64-bit content address of a text."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def trunk_key(model: Any, amp: bool = False) -> str:
    """Digest of what the trunk's outputs depend on: its weights, tokenisation settings and
    arithmetic (bf16 autocast or float32)."""
    settings = {
        "backbone": model.cfg.backbone,
        "max_tokens": model.cfg.max_tokens,
        "tokenizer": type(model.tokenizer).__name__,
        "vocab": len(model.tokenizer),
        "v": 2,
    }
    if amp:  # float32 caches keep the keys they always had
        settings["arithmetic"] = "bf16"
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, tensor in sorted(model.text_tower.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


class TrunkCache:
    """Frozen-trunk features of a fixed set of texts, read per batch from disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        info = json.loads((folder / "info.json").read_text(encoding="utf-8"))
        self.count, self.width, self.pooled_width = info["count"], info["width"], info["pooled"]
        self.offsets = np.load(folder / "offsets.npy", mmap_mode="r", allow_pickle=False)
        self.lengths = np.load(folder / "lengths.npy", mmap_mode="r", allow_pickle=False)
        self.pooled = np.load(folder / "pooled.npy", mmap_mode="r", allow_pickle=False)
        self.truncated = np.load(folder / "truncated.npy", mmap_mode="r", allow_pickle=False)
        self.hashes = np.load(folder / "hashes.npy", mmap_mode="r", allow_pickle=False)
        self.rows = np.load(folder / "rows.npy", mmap_mode="r", allow_pickle=False)
        self._tokens = folder / "tokens.f16"

    @classmethod
    def build(
        cls,
        root: str | os.PathLike[str],
        model: Any,
        texts: Iterable[str],
        *,
        device: str = "cpu",
        batch_size: int = 64,
        progress: bool = False,
        amp: bool = False,
    ) -> TrunkCache:
        """The cache of ``texts`` under ``root``, computing whatever an earlier run did not.

        ``amp``: run the trunk under bf16 autocast (as a run training with ``amp: bf16``
        does); such features are cached apart from float32 ones."""
        key = trunk_key(model, amp)
        unique: dict[int, str] = {}
        for text in texts:
            unique.setdefault(text_hash(text), text)
        digest = hashlib.sha256(np.sort(np.fromiter(unique, np.uint64, len(unique))).tobytes())
        folder = Path(root) / f"trunk-{key}-{digest.hexdigest()[:12]}"
        # Any finished cache of this trunk holding every text will do (a run reading fewer
        # texts than an earlier one reuses its cache); caches are never rewritten in place,
        # so runs sharing one never see it change.
        candidates = sorted(Path(root).glob(f"trunk-{key}-*")) if Path(root).is_dir() else []
        for found in [folder, *candidates]:
            if (found / "info.json").is_file():
                cache = cls(found)
                if all(cache.has(h) for h in unique):
                    return cache
        tmp = Path(root) / f".trunk-{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
                cls._compute(tmp, model, list(unique.items()), device, batch_size, progress)
            write_text(tmp / "info.json", json.dumps(cls._info(tmp, key)) + "\n")
            with contextlib.suppress(OSError):  # another process finished it first
                os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(folder)

    @staticmethod
    @torch.no_grad()
    def _compute(
        folder: Path,
        model: Any,
        items: list[tuple[int, str]],
        device: str,
        batch_size: int,
        progress: bool,
    ) -> None:
        model.eval()
        n = len(items)
        pooled: np.ndarray | None = None
        truncated = np.zeros(n, dtype=bool)
        # Length-sorted batches waste no padding; rows keep the input order.
        order = sorted(range(n), key=lambda i: len(items[i][1]))
        lengths = np.zeros(n, dtype=np.int64)
        spans: dict[int, np.ndarray] = {}
        with open(folder / "tokens.f16", "wb") as fh:
            bar = tqdm(total=n, desc="caching text features", unit="text", disable=not progress)
            for start in range(0, n, CHUNK_TEXTS):
                chunk = order[start : start + CHUNK_TEXTS]
                for b in range(0, len(chunk), batch_size):
                    idx = chunk[b : b + batch_size]
                    enc, cut = model.tokenize([items[i][1] for i in idx])
                    out = model.text_trunk(
                        enc["input_ids"].to(device), enc["attention_mask"].to(device)
                    )
                    if pooled is None:
                        # On disk, not in memory: a million texts' pooled features are GBs.
                        pooled = np.lib.format.open_memmap(
                            folder / "pooled.npy", "w+", np.float32, (n, out.pooled.shape[1])
                        )
                    kept = enc["attention_mask"].sum(1).tolist()
                    for j, i in enumerate(idx):
                        spans[i] = out.tokens[j, : kept[j]].to("cpu", torch.float16).numpy()
                        pooled[i] = out.pooled[j].float().cpu().numpy()
                        truncated[i] = cut[j]
                    bar.update(len(idx))
                # Write in row order as soon as every earlier row is known; keeps memory flat.
                for i in sorted(spans):
                    fh.write(spans[i].tobytes())
                    lengths[i] = spans[i].shape[0]
                spans.clear()
            bar.close()
        # Rows were written in length order chunk by chunk: record where each one landed.
        written = []
        for start in range(0, n, CHUNK_TEXTS):
            written.extend(sorted(order[start : start + CHUNK_TEXTS]))
        position = 0
        offsets = np.zeros(n, dtype=np.int64)
        for i in written:
            offsets[i] = position
            position += lengths[i]
        hashes = np.asarray([h for h, _ in items], dtype=np.uint64)
        rank = np.argsort(hashes, kind="stable")
        np.save(folder / "offsets.npy", offsets)
        np.save(folder / "lengths.npy", lengths)
        if pooled is None:
            np.save(folder / "pooled.npy", np.zeros((0, 1), dtype=np.float32))
        else:
            pooled.flush()
            del pooled
        np.save(folder / "truncated.npy", truncated)
        np.save(folder / "hashes.npy", hashes[rank])
        np.save(folder / "rows.npy", rank.astype(np.int64))

    @staticmethod
    def _info(folder: Path, key: str) -> dict[str, Any]:
        pooled = np.load(folder / "pooled.npy", mmap_mode="r")
        lengths = np.load(folder / "lengths.npy", mmap_mode="r")
        total = int(lengths.sum())
        size = (folder / "tokens.f16").stat().st_size
        width = size // (2 * total) if total else 0
        return {
            "key": key,
            "count": int(pooled.shape[0]),
            "width": width,
            "pooled": int(pooled.shape[1]),
        }

    def has(self, h: int) -> bool:
        pos = int(np.searchsorted(self.hashes, np.uint64(h)))
        return pos < len(self.hashes) and int(self.hashes[pos]) == h

    def _positions(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each text's position in the sorted hashes, and whether it is cached."""
        hashes = np.asarray([text_hash(t) for t in texts], dtype=np.uint64)
        if len(self.hashes) == 0:
            return np.zeros(len(texts), dtype=np.int64), np.zeros(len(texts), dtype=bool)
        pos = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        return pos, np.asarray(self.hashes[pos]) == hashes

    def covers(self, texts: Sequence[str]) -> bool:
        """Whether every one of ``texts`` is cached."""
        return bool(self._positions(texts)[1].all())

    def truncated_of(self, texts: Sequence[str]) -> np.ndarray:
        """Whether each (cached) text was cut at the length limit."""
        return np.asarray(self.truncated[self._rows(texts)], dtype=bool)

    def _rows(self, texts: Sequence[str]) -> np.ndarray:
        pos, found = self._positions(texts)
        if not found.all():
            missing = int((~found).sum())
            raise PlanetlocError(f"{self.folder}: {missing} texts of the batch are not cached")
        return np.asarray(self.rows[pos])

    def batch(self, texts: Sequence[str], device: str = "cpu") -> TextOutput:
        """Token features, mask and pooled features of ``texts`` (all must be cached)."""
        rows = self._rows(texts)
        starts = np.asarray(self.offsets[rows])
        ends = starts + np.asarray(self.lengths[rows])
        length = int((ends - starts).max())
        tokens = np.zeros((len(texts), length, self.width), dtype=np.float16)
        mask = np.zeros((len(texts), length), dtype=bool)
        row_bytes = 2 * self.width
        with open(self._tokens, "rb") as fh:
            for j, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
                fh.seek(s * row_bytes)
                tokens[j, : e - s] = np.frombuffer(
                    fh.read((e - s) * row_bytes), np.float16
                ).reshape(e - s, self.width)
                mask[j, : e - s] = True
        return TextOutput(
            tokens=torch.from_numpy(tokens).to(device),
            mask=torch.from_numpy(mask).to(device),
            pooled=torch.from_numpy(np.asarray(self.pooled[rows], dtype=np.float32)).to(device),
        )

    def truncated_fraction(self) -> float:
        return float(np.mean(self.truncated)) if self.count else 0.0
