"""Training data: tiles, their physical signatures, and text features, batched by step.

Batches are a pure function of (seed, step): epoch e visits the samples in a permutation
drawn from seed + e, so a resumed run sees exactly the batches the uninterrupted run would,
and each DDP rank takes its contiguous slice of the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from planetloc.atomic import atomic_path
from planetloc.data.images import load_tiles
from planetloc.data.manifest import Manifest
from planetloc.data.schema import Sample
from planetloc.errors import PlanetlocError
from planetloc.model.planet import Planet
from planetloc.model.towers import TextOutput


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Sample indices of the global batch at ``step`` (incomplete last batches are dropped)."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise PlanetlocError(f"batch size {batch_size} exceeds the {n} training samples")
    epoch, pos = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    return perm[pos * batch_size : (pos + 1) * batch_size]


def rank_slice(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    if len(indices) % world_size:
        raise PlanetlocError(
            f"batch size {len(indices)} is not divisible by {world_size} processes"
        )
    per = len(indices) // world_size
    return indices[rank * per : (rank + 1) * per]


@dataclass
class TextCache:
    """Frozen-trunk outputs of every text, kept in memory (tokens in float16)."""

    tokens: list[torch.Tensor]
    pooled: torch.Tensor
    truncated: list[bool]

    def batch(self, idx: torch.Tensor, device: str) -> TextOutput:
        rows = [self.tokens[i] for i in idx.tolist()]
        length = max(r.shape[0] for r in rows)
        dim = rows[0].shape[1]
        tokens = torch.zeros(len(rows), length, dim, dtype=torch.float16)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for j, r in enumerate(rows):
            tokens[j, : r.shape[0]] = r
            mask[j, : r.shape[0]] = True
        return TextOutput(
            tokens=tokens.to(device), mask=mask.to(device), pooled=self.pooled[idx].to(device)
        )


@torch.no_grad()
def encode_trunk(
    model: Planet,
    texts: list[str],
    *,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> TextCache:
    """Run the frozen text trunk once over ``texts`` (sorted by length to waste no padding)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    tokens: list[torch.Tensor | None] = [None] * len(texts)
    pooled: list[torch.Tensor | None] = [None] * len(texts)
    truncated = [False] * len(texts)
    model.eval()
    for start in tqdm(
        range(0, len(order), batch_size),
        desc="encoding texts",
        unit="batch",
        disable=not progress,
        leave=False,
    ):
        idx = order[start : start + batch_size]
        enc, cut = model.tokenize([texts[i] for i in idx])
        out = model.text_trunk(enc["input_ids"].to(device), enc["attention_mask"].to(device))
        lengths = enc["attention_mask"].sum(1).tolist()
        for j, i in enumerate(idx):
            tokens[i] = out.tokens[j, : lengths[j]].to("cpu", torch.float16)
            pooled[i] = out.pooled[j].float().cpu()
            truncated[i] = cut[j]
    return TextCache(tokens=tokens, pooled=torch.stack(pooled), truncated=truncated)  # type: ignore[arg-type]


def trunk_cache_key(model: Planet, texts: list[str]) -> str:
    """Content address of the frozen-trunk features of ``texts`` under ``model``'s settings."""
    import hashlib

    cfg = model.cfg
    h = hashlib.sha256(f"{cfg.backbone}|{cfg.text_source}|{cfg.max_tokens}|v1".encode())
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def cached_trunk(
    model: Planet,
    texts: list[str],
    cache_dir: Path | None,
    *,
    device: str = "cpu",
    progress: bool = True,
) -> TextCache:
    """:func:`encode_trunk`, reusing features saved under ``cache_dir`` by an earlier run."""
    if cache_dir is None:
        return encode_trunk(model, texts, device=device, progress=progress)
    path = Path(cache_dir) / f"text-{trunk_cache_key(model, texts)}.pt"
    if path.exists():
        try:
            return TextCache(**torch.load(path, weights_only=False))
        except Exception:
            path.unlink(missing_ok=True)  # damaged cache: recompute below
    cache = encode_trunk(model, texts, device=device, progress=progress)
    with atomic_path(path) as tmp:
        torch.save(
            {"tokens": cache.tokens, "pooled": cache.pooled, "truncated": cache.truncated}, tmp
        )
    return cache


@dataclass
class PairData:
    """The samples of one split with everything a step needs."""

    samples: list[Sample]
    tiles: torch.Tensor  # (N, 3, H, W) uint8
    signatures: dict[str, torch.Tensor]
    text: TextCache | None  # None when the trunk trains: texts are tokenised per batch

    def __len__(self) -> int:
        return len(self.samples)


@torch.no_grad()
def signatures_of(
    model: Planet, tiles: torch.Tensor, batch_size: int = 256
) -> dict[str, torch.Tensor]:
    parts = [
        model.tile_signatures(tiles[i : i + batch_size]) for i in range(0, len(tiles), batch_size)
    ]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def default_cache_dir(manifest: Manifest) -> Path:
    """Where frozen-trunk text features of a dataset are kept between runs."""
    return manifest.root / ".planetloc-cache"


def prepare(
    manifest: Manifest,
    samples: list[Sample],
    model: Planet,
    *,
    device: str = "cpu",
    progress: bool = True,
) -> PairData:
    """Tiles, signatures and (for a frozen trunk) cached text features of ``samples``."""
    if not samples:
        raise PlanetlocError(f"{manifest.path}: no samples in the requested split")
    tiles = load_tiles(manifest, samples, size=model.cfg.image_size, progress=progress)
    text = None
    if model.text_trunk_frozen:
        texts = [s.text for s in samples]
        text = cached_trunk(
            model, texts, default_cache_dir(manifest), device=device, progress=progress
        )
    return PairData(samples=samples, tiles=tiles, signatures=signatures_of(model, tiles), text=text)
