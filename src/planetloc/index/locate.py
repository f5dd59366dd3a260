"""``Locator``: "here is what I see, where am I?" over a built gallery index.

A query is a description, a street-level photo, or both (for models trained on joint
queries), plus an optional geographic prior. It is validated once (:meth:`Query.check`),
encoded by the model (:class:`~planetloc.model.inference.Encoder`), searched in the index
(which returns rows with exact scores) and turned into ranked tiles and one estimate
(:mod:`planetloc.index.estimate`). Nothing here imports training or evaluation code.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from planetloc.errors import PlanetlocError
from planetloc.index.estimate import Estimate, estimate_location
from planetloc.index.priors import Prior, select
from planetloc.index.store import GalleryIndex
from planetloc.model.checkpoint import load_model, read_checkpoint
from planetloc.model.inference import Encoder
from planetloc.model.physics import BRANCHES

MAX_K = 100
DEFAULT_MAX_CHARS = 4000
MAX_IMAGE_BYTES = 20 * 1024 * 1024
ASPECT_TOLERANCE = 0.25  # a view may differ this much from the model's width/height ratio


@dataclass
class Query:
    """One localisation request, as every caller (CLI, HTTP, Python) expresses it."""

    text: str | None = None
    image: bytes | None = None  # an encoded street-level image (JPEG, PNG, ...)
    heading_deg: float | None = None  # compass bearing the image's centre looks along
    k: int = 5
    prior: Prior | None = None

    def check(self, *, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        """Refuse a malformed request with one line naming the bad field."""
        if self.text is None and self.image is None:
            raise PlanetlocError("give a description (text), a street-level image, or both")
        if self.text is not None:
            if not isinstance(self.text, str):
                raise PlanetlocError(
                    f"the description must be text, got {type(self.text).__name__}"
                )
            if not self.text.strip():
                raise PlanetlocError("the description is empty")
            if len(self.text) > max_chars:
                raise PlanetlocError(
                    f"the description has {len(self.text)} characters; the limit is {max_chars}"
                )
            try:
                self.text.encode("utf-8")
            except UnicodeEncodeError:
                raise PlanetlocError(
                    "the description holds characters that are not valid text"
                ) from None
        if self.image is not None:
            if not isinstance(self.image, bytes | bytearray) or not self.image:
                raise PlanetlocError("the image is empty (0 bytes)")
            if len(self.image) > MAX_IMAGE_BYTES:
                raise PlanetlocError(
                    f"the image has {len(self.image)} bytes; the limit is {MAX_IMAGE_BYTES}"
                )
        if self.heading_deg is not None and (
            isinstance(self.heading_deg, bool)
            or not isinstance(self.heading_deg, int | float)
            or not math.isfinite(self.heading_deg)
        ):
            raise PlanetlocError(
                f"heading must be a finite number of degrees, got {self.heading_deg!r}"
            )
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise PlanetlocError(f"k must be an integer between 1 and {MAX_K}, got {self.k!r}")


@dataclass
class TileHit:
    id: str
    lat: float
    lon: float
    region: str
    score: float
    physics: dict[str, float]


@dataclass
class LocateResult:
    text: str | None
    tiles: list[TileHit]
    estimate: Estimate | None
    truncated: bool = False  # the description was longer than the model reads
    query: str = "text"  # what was searched with: text, image or joint
    heading_deg: float | None = None
    prior: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Locator:
    """A trained model and a gallery index, ready to answer queries."""

    def __init__(
        self, index: GalleryIndex, model: Any, *, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        self.index = index
        self.encoder = Encoder(model)
        self.model = self.encoder.model
        self.max_chars = max_chars
        self.scale = self.encoder.temperature_scale

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike[str],
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> Locator:
        """Open an index with the model that built it (or ``checkpoint``, if it is that model).

        Checkpoints are safetensors files: opening one from someone else runs no code.
        """
        index = GalleryIndex.open(folder)
        path = checkpoint or index.info.get("checkpoint")
        if not path:
            raise PlanetlocError(f"{folder}: the index names no checkpoint; pass --checkpoint")
        info = read_checkpoint(path)
        index.check_model(info.fingerprint, int(info.model_config["embed_dim"]))
        return cls(index, load_model(info), max_chars=max_chars)

    @property
    def accepts(self) -> tuple[str, ...]:
        """What queries this model answers: ``text``, ``image`` or both."""
        cfg = self.model.cfg
        return tuple(k for k, on in (("text", cfg.uses_text), ("image", cfg.uses_street)) if on)

    def _view(self, query: Query) -> torch.Tensor:
        from planetloc.data.images import decode_rgb
        from planetloc.data.stream import north_aligned

        cfg = self.model.cfg
        h, w = cfg.street_size
        with_size = decode_rgb(bytes(query.image), None, source="the image")  # type: ignore[arg-type]
        ratio = with_size.shape[1] / with_size.shape[0]
        if abs(ratio / (w / h) - 1) > ASPECT_TOLERANCE:
            raise PlanetlocError(
                f"the image is {with_size.shape[1]} x {with_size.shape[0]} pixels (ratio "
                f"{ratio:.2f}); this model reads views of ratio {w / h:.2f}, e.g. {w} x {h}"
            )
        view = decode_rgb(bytes(query.image), (h, w), source="the image")  # type: ignore[arg-type]
        if cfg.street_align == "north":
            if query.heading_deg is None:
                raise PlanetlocError("this model reads north-aligned views: give the heading")
            view = north_aligned(view, float(query.heading_deg))
        return torch.from_numpy(view).permute(2, 0, 1).unsqueeze(0).contiguous()

    def _view_vector(self, query: Query) -> np.ndarray:
        if not self.model.cfg.uses_street:
            raise PlanetlocError("this model was trained on descriptions only: send text")
        with torch.no_grad():
            vec = self.model.encode_street(self._view(query)).float().numpy()[0]
        if not np.isfinite(vec).all():
            raise PlanetlocError("the model produced a non-finite embedding for the image")
        return vec

    def locate(self, query: Query) -> LocateResult:
        """Rank the gallery's tiles for one query and estimate where it was made."""
        return self.locate_many([query])[0]

    def locate_many(self, queries: list[Query]) -> list[LocateResult]:
        """Answer several queries, encoding their descriptions in one batch."""
        for query in queries:
            query.check(max_chars=self.max_chars)
        texts = [q.text for q in queries if q.text is not None]
        if texts and not self.model.cfg.uses_text:
            raise PlanetlocError("this model was trained on images only: send an image")
        text_emb = self.encoder.encode_texts(texts) if texts else None
        results, t = [], 0
        for query in queries:
            text = None
            if query.text is not None:
                text = text_emb.take([t])  # type: ignore[union-attr]
                t += 1
            view = self._view_vector(query) if query.image is not None else None
            results.append(self._answer(query, text, view))
        return results

    def _answer(self, query: Query, text: Any, view: np.ndarray | None) -> LocateResult:
        idx = self.index
        allowed = select(query.prior, idx.lat, idx.lon, idx.region)
        if text is not None and view is not None:
            kind = "joint"
            rows, scores = idx.search_joint(
                text.global_[0], view, query.k, allowed, self.model.cfg.joint_score
            )
        else:
            kind = "text" if text is not None else "image"
            vector = text.global_[0] if text is not None else view
            rows, scores = idx.search(vector[None, :], query.k, allowed)
            rows, scores = rows[0], scores[0]
        keep = rows >= 0
        rows, scores = rows[keep], scores[keep]
        physics: dict[str, np.ndarray] = {}
        if text is not None and len(rows):
            physics = {
                b: np.asarray(idx.phys[b][rows], dtype=np.float64)
                @ text.phys[b][0].astype(np.float64)
                for b in BRANCHES
            }
        tiles = [
            TileHit(
                id=str(idx.ids[j]),
                lat=float(idx.lat[j]),
                lon=float(idx.lon[j]),
                region=str(idx.region[j]),
                score=float(scores[n]),
                physics={b: float(physics[b][n]) for b in physics},
            )
            for n, j in enumerate(rows.tolist())
        ]
        estimate = (
            estimate_location(idx.lat[rows], idx.lon[rows], scores, self.scale, idx.tile_size_m)
            if len(tiles)
            else None
        )
        return LocateResult(
            text=query.text,
            tiles=tiles,
            estimate=estimate,
            truncated=bool(text.truncated[0]) if text is not None else False,
            query=kind,
            heading_deg=query.heading_deg,
            prior={} if query.prior is None else query.prior.to_dict(),
        )
