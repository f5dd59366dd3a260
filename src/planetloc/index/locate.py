"""``Locator``: "here is my description, where am I?" over a built gallery index.

The estimate is the score-weighted centre of the best tile's cluster: the top-k tiles within
``CLUSTER_KM`` of the best one, weighted by the softmax of their scores at the model's
learned temperature. Its uncertainty radius is twice the cluster's weighted RMS spread
(never less than half a tile's diagonal), divided by the share of the total weight the
cluster holds: when other, distant tiles score nearly as well, the radius says so.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from planetloc.errors import PlanetlocError
from planetloc.geo.coords import EARTH_RADIUS_M
from planetloc.index.priors import Prior, select
from planetloc.index.store import GalleryIndex
from planetloc.model.physics import BRANCHES
from planetloc.train.checkpoint import load_model, read_checkpoint

MAX_K = 100
DEFAULT_MAX_CHARS = 4000
TILE_HALF_DIAGONAL_M = 136.0  # a 192 m SynthCORE tile; real galleries set their own
CLUSTER_KM = 5.0
MAX_RADIUS_M = 20_037_000.0  # half the Earth's circumference: nothing is further away


@dataclass
class TileHit:
    id: str
    lat: float
    lon: float
    region: str
    score: float
    physics: dict[str, float]


@dataclass
class Estimate:
    lat: float
    lon: float
    radius_m: float


@dataclass
class LocateResult:
    text: str
    tiles: list[TileHit]
    estimate: Estimate | None
    prior: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_text(text: object, max_chars: int) -> str:
    if not isinstance(text, str):
        raise PlanetlocError(f"the description must be text, got {type(text).__name__}")
    if not text.strip():
        raise PlanetlocError("the description is empty")
    if len(text) > max_chars:
        raise PlanetlocError(
            f"the description has {len(text)} characters; the limit is {max_chars}"
        )
    return text


def estimate_location(
    lat: np.ndarray,
    lon: np.ndarray,
    scores: np.ndarray,
    scale: float,
    min_radius_m: float = TILE_HALF_DIAGONAL_M,
) -> Estimate:
    """Centre and uncertainty radius from ranked candidate tiles (see the module docstring)."""
    from planetloc.geo.coords import haversine_m

    w = np.exp(scale * (scores - scores.max()))
    w /= w.sum()
    best = int(np.argmax(scores))
    cluster = haversine_m(lat[best], lon[best], lat, lon) <= CLUSTER_KM * 1000
    wc = w[cluster] / w[cluster].sum()
    # Average on the unit sphere so a cluster across the antimeridian does not fold.
    phi, lam = np.radians(lat[cluster]), np.radians(lon[cluster])
    xyz = np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=1)
    centre = (wc[:, None] * xyz).sum(0)
    centre /= np.linalg.norm(centre)
    c_lat = float(np.degrees(np.arcsin(np.clip(centre[2], -1, 1))))
    c_lon = float(np.degrees(np.arctan2(centre[1], centre[0])))
    dist = EARTH_RADIUS_M * np.arccos(np.clip(xyz @ centre, -1, 1))
    spread = float(np.sqrt((wc * dist**2).sum()))
    share = float(w[cluster].sum())
    radius = min(max(min_radius_m, 2.0 * spread) / max(share, 0.05), MAX_RADIUS_M)
    return Estimate(lat=c_lat, lon=c_lon, radius_m=radius)


class Locator:
    """A trained model and a gallery index, ready to answer descriptions."""

    def __init__(
        self, index: GalleryIndex, model: Any, *, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        self.index = index
        self.model = model.eval()
        self.max_chars = max_chars
        self.scale = float(model.logit_scale.detach().exp().clamp(max=100.0))

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike[str],
        *,
        checkpoint: str | os.PathLike[str] | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> Locator:
        """Open an index with the model that built it (or ``checkpoint``, if it is that model)."""
        index = GalleryIndex.open(folder)
        path = checkpoint or index.info["checkpoint"]
        payload = read_checkpoint(path)
        index.check_model(payload)
        return cls(index, load_model(path, payload), max_chars=max_chars)

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        enc, _ = self.model.tokenize(texts)
        emb = self.model.encode_text(enc["input_ids"], enc["attention_mask"])
        return emb.global_.float().numpy(), {k: v.float().numpy() for k, v in emb.phys.items()}

    def locate(self, text: str, k: int = 5, prior: Prior | None = None) -> LocateResult:
        return self.locate_batch([text], k=k, prior=prior)[0]

    def locate_batch(
        self, texts: list[str], k: int = 5, prior: Prior | None = None
    ) -> list[LocateResult]:
        if not isinstance(texts, list) or not texts:
            raise PlanetlocError("give at least one description")
        texts = [check_text(t, self.max_chars) for t in texts]
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise PlanetlocError(f"k must be between 1 and {MAX_K}, got {k!r}")
        idx = self.index
        allowed = select(prior, idx.lat, idx.lon, idx.region)
        q, q_phys = self._encode(texts)
        scores, ids = idx.search(q, k, allowed)
        results = []
        for row, text in enumerate(texts):
            keep = ids[row] >= 0
            hit_ids, hit_scores = ids[row][keep], scores[row][keep]
            # FAISS scores of compressed indexes are approximate: report exact cosines.
            exact = np.asarray(idx.embeddings[hit_ids], dtype=np.float32) @ q[row]
            order = np.argsort(-exact, kind="stable")
            hit_ids, hit_scores = hit_ids[order], exact[order]
            physics = {
                b: idx.phys[b][hit_ids].astype(np.float32) @ q_phys[b][row] for b in BRANCHES
            }
            tiles = [
                TileHit(
                    id=str(idx.ids[j]),
                    lat=float(idx.lat[j]),
                    lon=float(idx.lon[j]),
                    region=str(idx.region[j]),
                    score=float(hit_scores[n]),
                    physics={b: float(physics[b][n]) for b in BRANCHES},
                )
                for n, j in enumerate(hit_ids)
            ]
            estimate = (
                estimate_location(idx.lat[hit_ids], idx.lon[hit_ids], hit_scores, self.scale)
                if len(tiles)
                else None
            )
            results.append(
                LocateResult(
                    text=text,
                    tiles=tiles,
                    estimate=estimate,
                    prior={} if prior is None else asdict(prior),
                )
            )
        return results
