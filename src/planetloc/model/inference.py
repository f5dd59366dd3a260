"""Inference: texts, tiles and street views to embeddings, batched, with progress.

Every consumer (training's validation, evaluation, the gallery index, ``locate``, the service,
the baselines) encodes through :class:`Encoder`, and every result is one type,
:class:`Embeddings`. Non-finite embeddings (a diverged model) are refused here, once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from planetloc.errors import PlanetlocError
from planetloc.model.physics import BRANCHES
from planetloc.model.trunk_cache import TrunkCache


@dataclass
class Embeddings:
    """Unit-norm embeddings of N inputs; row i belongs to input i.

    ``global_`` (N, E) is what retrieval compares; ``phys`` holds the (N, P) physical
    embeddings per branch (colour, structure, texture) that explain and re-rank matches.
    Texts also carry ``truncated`` (cut at ``max_tokens``); tiles may carry their raw
    ``signatures``.
    """

    global_: np.ndarray
    phys: dict[str, np.ndarray] = field(default_factory=dict)
    truncated: np.ndarray | None = None
    signatures: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.global_.shape[0])

    def take(self, rows: np.ndarray | Sequence[int]) -> Embeddings:
        """The embeddings of ``rows``, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return Embeddings(
            global_=self.global_[rows],
            phys={k: v[rows] for k, v in self.phys.items()},
            truncated=None if self.truncated is None else self.truncated[rows],
            signatures=None
            if self.signatures is None
            else {k: v[rows] for k, v in self.signatures.items()},
        )

    @classmethod
    def concat(cls, parts: Sequence[Embeddings]) -> Embeddings:
        """Rows of every part, in order."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        return cls(
            global_=np.concatenate([p.global_ for p in parts]),
            phys={k: np.concatenate([p.phys[k] for p in parts]) for k in first.phys},
            truncated=None
            if first.truncated is None
            else np.concatenate([p.truncated for p in parts]),  # type: ignore[misc]
            signatures=None
            if first.signatures is None
            else {k: np.concatenate([p.signatures[k] for p in parts]) for k in first.signatures},  # type: ignore[index]
        )

    def check_finite(self, what: str) -> None:
        """Refuse NaN or infinite embeddings with one line (a diverged or broken model)."""
        arrays = [self.global_, *self.phys.values()]
        bad = int(sum((~np.isfinite(a)).any(axis=1).sum() for a in arrays))
        if bad:
            raise PlanetlocError(
                f"the model produced non-finite embeddings for {bad} {what}: its weights are "
                "broken (did training diverge?)"
            )


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class Encoder:
    """A model ready for inference on a device, encoding in batches."""

    def __init__(
        self,
        model: Any,
        *,
        device: str = "cpu",
        text_batch_size: int = 64,
        tile_batch_size: int = 128,
        trunk_cache: TrunkCache | None = None,
    ) -> None:
        """``trunk_cache``: features of the model's frozen text trunk read from disk instead
        of computed, for the texts it holds (training's validation texts, say)."""
        if text_batch_size < 1 or tile_batch_size < 1:
            raise PlanetlocError("batch sizes must be at least 1")
        self.model = model.to(device).eval()
        self.device = device
        self.text_batch_size = text_batch_size
        self.tile_batch_size = tile_batch_size
        self.trunk_cache = trunk_cache

    @property
    def temperature_scale(self) -> float:
        """The learned logit scale: how peaked the model's softmax over scores is."""
        return float(self.model.logit_scale.detach().exp().clamp(max=100.0))

    @torch.no_grad()
    def encode_texts(
        self, texts: Sequence[str], *, progress: bool = False, desc: str = "encoding texts"
    ) -> Embeddings:
        """Embeddings of ``texts`` (batched by length to waste no padding)."""
        if len(texts) == 0:
            return self._empty(text=True)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts: list[tuple[list[int], Embeddings]] = []
        step = self.text_batch_size
        for start in tqdm(
            range(0, len(order), step), desc=desc, unit="batch", disable=not progress, leave=False
        ):
            idx = order[start : start + step]
            batch = [texts[i] for i in idx]
            if self.trunk_cache is not None and self.trunk_cache.covers(batch):
                emb = self.model.text_head(self.trunk_cache.batch(batch, self.device))
                cut = self.trunk_cache.truncated_of(batch).tolist()
            else:
                enc, cut = self.model.tokenize(batch)
                emb = self.model.encode_text(
                    enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
                )
            parts.append(
                (
                    idx,
                    Embeddings(
                        global_=_numpy(emb.global_),
                        phys={k: _numpy(v) for k, v in emb.phys.items()},
                        truncated=np.asarray(cut, dtype=bool),
                    ),
                )
            )
        merged = Embeddings.concat([p for _, p in parts])
        position = np.empty(len(texts), dtype=np.int64)
        position[np.concatenate([np.asarray(i) for i, _ in parts])] = np.arange(len(texts))
        out = merged.take(position)
        out.check_finite("texts")
        return out

    @torch.no_grad()
    def encode_tile_batch(self, tiles: torch.Tensor, *, signatures: bool = False) -> Embeddings:
        """Embeddings of one batch of (B, 3, H, W) uint8 tiles."""
        tiles = tiles.to(self.device)
        sigs = self.model.tile_signatures(tiles)
        phys = self.model.encode_signatures(sigs)
        out = Embeddings(
            global_=_numpy(self.model.encode_image(tiles)),
            phys={k: _numpy(v) for k, v in phys.items()},
            signatures={k: _numpy(v) for k, v in sigs.items()} if signatures else None,
        )
        out.check_finite("tiles")
        return out

    def iter_tiles(
        self,
        tiles: Iterable[np.ndarray],
        *,
        total: int | None = None,
        progress: bool = False,
        signatures: bool = False,
        desc: str = "encoding tiles",
    ) -> Iterator[Embeddings]:
        """Stream embeddings of (H, W, 3) uint8 tiles, one :class:`Embeddings` per batch."""
        batch: list[np.ndarray] = []
        with tqdm(total=total, desc=desc, unit="tile", disable=not progress, leave=False) as bar:
            for tile in tiles:
                batch.append(tile)
                if len(batch) == self.tile_batch_size:
                    yield self._tile_batch(batch, signatures)
                    bar.update(len(batch))
                    batch = []
            if batch:
                yield self._tile_batch(batch, signatures)
                bar.update(len(batch))

    def _tile_batch(self, arrays: list[np.ndarray], signatures: bool) -> Embeddings:
        from planetloc.data.images import stack_tiles

        return self.encode_tile_batch(stack_tiles(arrays), signatures=signatures)

    def encode_tiles(
        self,
        tiles: Iterable[np.ndarray] | torch.Tensor,
        *,
        total: int | None = None,
        progress: bool = False,
        signatures: bool = False,
    ) -> Embeddings:
        """Embeddings of every tile: (H, W, 3) uint8 arrays, or a (N, 3, H, W) uint8 tensor."""
        if isinstance(tiles, torch.Tensor):
            parts = [
                self.encode_tile_batch(tiles[s : s + self.tile_batch_size], signatures=signatures)
                for s in range(0, len(tiles), self.tile_batch_size)
            ]
        else:
            parts = list(
                self.iter_tiles(tiles, total=total, progress=progress, signatures=signatures)
            )
        return Embeddings.concat(parts) if parts else self._empty(text=False)

    @torch.no_grad()
    def encode_views(
        self, views: Iterable[np.ndarray], *, total: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """(N, E) embeddings of street views given as (H, W, 3) uint8 arrays."""
        from planetloc.data.images import stack_tiles

        parts: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        with tqdm(
            total=total, desc="encoding views", unit="view", disable=not progress, leave=False
        ) as bar:
            for view in views:
                batch.append(view)
                if len(batch) == self.tile_batch_size:
                    parts.append(
                        _numpy(self.model.encode_street(stack_tiles(batch).to(self.device)))
                    )
                    bar.update(len(batch))
                    batch = []
            if batch:
                parts.append(_numpy(self.model.encode_street(stack_tiles(batch).to(self.device))))
                bar.update(len(batch))
        out = (
            np.concatenate(parts) if parts else np.zeros((0, self.model.cfg.embed_dim), np.float32)
        )
        if not np.isfinite(out).all():
            raise PlanetlocError("the model produced non-finite embeddings for street views")
        return out

    def _empty(self, *, text: bool) -> Embeddings:
        dim = self.model.cfg.embed_dim
        pdim = self.model.cfg.phys_dim
        return Embeddings(
            global_=np.zeros((0, dim), dtype=np.float32),
            phys={k: np.zeros((0, pdim), dtype=np.float32) for k in BRANCHES},
            truncated=np.zeros(0, dtype=bool) if text else None,
        )
