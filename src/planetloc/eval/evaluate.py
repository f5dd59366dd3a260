"""Evaluate a model on a manifest: every evaluation set, both protocols, per-region tables.

Protocols: ``full`` ranks each query against the whole gallery of its set; ``m100`` ranks it
only among the 100 gallery tiles nearest its true location (the CVG-Text protocol).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from planetloc.data.images import load_tiles
from planetloc.data.manifest import Manifest
from planetloc.data.schema import Sample
from planetloc.eval.metrics import DEFAULT_BUDGET_BYTES, embedding_metrics
from planetloc.eval.protocols import evaluation_sets
from planetloc.model.physics import BRANCHES
from planetloc.model.planet import Planet, TextEmbeddings
from planetloc.train.data import cached_trunk, default_cache_dir

RERANK_TOP = 50


@dataclass
class Encoded:
    """Unit-norm global embeddings and physical embeddings of texts or tiles."""

    global_: np.ndarray
    phys: dict[str, np.ndarray]


@torch.no_grad()
def encode_texts(
    model: Planet,
    texts: list[str],
    *,
    device: str = "cpu",
    batch_size: int = 64,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> tuple[Encoded, float]:
    """Embeddings of ``texts`` and the fraction that did not fit in ``max_tokens``.

    With a frozen text trunk, its features come from (and go to) ``cache_dir``.
    """
    model.eval()
    glob, phys = [], {k: [] for k in BRANCHES}
    if model.text_trunk_frozen:
        cache = cached_trunk(model, texts, cache_dir, device=device, progress=progress)
        truncated = sum(cache.truncated)
        batches = (
            cache.batch(torch.arange(s, min(s + batch_size, len(texts))), device)
            for s in range(0, len(texts), batch_size)
        )
        outputs = (model.text_head(b) for b in batches)
    else:
        truncated = 0

        def run() -> Iterator[TextEmbeddings]:
            nonlocal truncated
            for start in tqdm(
                range(0, len(texts), batch_size),
                desc="encoding queries",
                unit="batch",
                disable=not progress,
                leave=False,
            ):
                enc, cut = model.tokenize(texts[start : start + batch_size])
                truncated += sum(cut)
                yield model.encode_text(
                    enc["input_ids"].to(device), enc["attention_mask"].to(device)
                )

        outputs = run()
    for emb in outputs:
        glob.append(emb.global_.float().cpu())
        for k in BRANCHES:
            phys[k].append(emb.phys[k].float().cpu())
    enc_out = Encoded(torch.cat(glob).numpy(), {k: torch.cat(v).numpy() for k, v in phys.items()})
    return enc_out, truncated / max(1, len(texts))


@torch.no_grad()
def encode_tiles(
    model: Planet,
    tiles: torch.Tensor,
    *,
    device: str = "cpu",
    batch_size: int = 128,
    progress: bool = True,
) -> Encoded:
    model.eval()
    glob, phys = [], {k: [] for k in BRANCHES}
    for start in tqdm(
        range(0, len(tiles), batch_size),
        desc="encoding tiles",
        unit="batch",
        disable=not progress,
        leave=False,
    ):
        batch = tiles[start : start + batch_size].to(device)
        glob.append(model.encode_image(batch).float().cpu())
        f = model.encode_signatures(model.tile_signatures(batch))
        for k in BRANCHES:
            phys[k].append(f[k].float().cpu())
    return Encoded(torch.cat(glob).numpy(), {k: torch.cat(v).numpy() for k, v in phys.items()})


def rerank_hook(q: Encoded, g: Encoded, alpha: float, top: int = RERANK_TOP):
    """Score adjuster for :func:`embedding_metrics`: ``s_itc + alpha * sum_k s_k`` on the top K.

    Candidates outside the top K keep their order but fall below every re-ranked one.
    """

    def adjust(scores: np.ndarray, rows: slice) -> np.ndarray:
        k = min(top, scores.shape[1])
        cand = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        phys = np.zeros(cand.shape, dtype=np.float32)
        for name in BRANCHES:
            tq = q.phys[name][rows]
            phys += np.einsum("qd,qkd->qk", tq, g.phys[name][cand])
        out = scores - 1e3
        np.put_along_axis(
            out, cand, np.take_along_axis(scores, cand, axis=1) + alpha * phys, axis=1
        )
        return out

    return adjust


def _latlon(samples: list[Sample]) -> np.ndarray:
    return np.asarray([[s.lat, s.lon] for s in samples], dtype=np.float64)


def evaluate_split(
    model: Planet,
    manifest: Manifest,
    queries: list[Sample],
    gallery: list[Sample],
    *,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, float]:
    """Full-gallery metrics of one query set against one gallery (used for validation)."""
    q, _ = encode_texts(
        model,
        [s.text for s in queries],
        device=device,
        progress=progress,
        cache_dir=default_cache_dir(manifest),
    )
    g = encode_tiles(
        model,
        load_tiles(manifest, gallery, size=model.cfg.image_size, progress=progress),
        device=device,
        progress=progress,
    )
    pos = {s.id: i for i, s in enumerate(gallery)}
    metrics, _, _ = embedding_metrics(
        q.global_,
        g.global_,
        np.asarray([pos[s.id] for s in queries]),
        _latlon(queries),
        _latlon(gallery),
    )
    return metrics


def evaluate_model(
    model: Planet,
    manifest: Manifest,
    *,
    device: str = "cpu",
    m: int = 100,
    rerank_alpha: float = 0.0,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    progress: bool = True,
    examples: int = 3,
) -> dict[str, Any]:
    """The evaluation report of ``model`` on every evaluation set of ``manifest``.

    Schema: ``{"truncated_fraction", "rerank_alpha", "m", "sets": {set: {"full": metrics,
    "m<m>": metrics, "regions": {region: {"queries", "R@1", "R@5", "R@10"}}}}, "examples"}``.
    """
    sets = evaluation_sets(manifest.samples)
    gallery_all = list({s.id: s for es in sets for s in es.gallery}.values())
    queries_all = list({s.id: s for es in sets for s in es.queries}.values())
    tiles = load_tiles(manifest, gallery_all, size=model.cfg.image_size, progress=progress)
    g_all = encode_tiles(model, tiles, device=device, progress=progress)
    q_all, truncated = encode_texts(
        model, [s.text for s in queries_all], device=device, progress=progress
    )
    g_pos = {s.id: i for i, s in enumerate(gallery_all)}
    q_pos = {s.id: i for i, s in enumerate(queries_all)}
    report: dict[str, Any] = {
        "truncated_fraction": truncated,
        "rerank_alpha": rerank_alpha,
        "m": m,
        "sets": {},
    }
    for es in sets:
        gi = np.asarray([g_pos[s.id] for s in es.gallery])
        qi = np.asarray([q_pos[s.id] for s in es.queries])
        g = Encoded(g_all.global_[gi], {k: v[gi] for k, v in g_all.phys.items()})
        q = Encoded(q_all.global_[qi], {k: v[qi] for k, v in q_all.phys.items()})
        true = np.asarray(es.true_index)
        qll, gll = _latlon(es.queries), _latlon(es.gallery)
        adjust = rerank_hook(q, g, rerank_alpha) if rerank_alpha else None
        full, ranks, top = embedding_metrics(
            q.global_,
            g.global_,
            true,
            qll,
            gll,
            budget_bytes=budget_bytes,
            keep_top=5,
            adjust=adjust,
        )
        near, _, _ = embedding_metrics(
            q.global_, g.global_, true, qll, gll, m=m, budget_bytes=budget_bytes, adjust=adjust
        )
        regions: dict[str, dict[str, float]] = {}
        for region in sorted({s.region for s in es.queries}):
            mask = np.asarray([s.region == region for s in es.queries])
            r = ranks[mask]
            regions[region] = {"queries": int(mask.sum())} | {
                f"R@{k}": float(100 * np.mean(r < k)) for k in (1, 5, 10)
            }
        report["sets"][es.name] = {"full": full, f"m{m}": near, "regions": regions}
        if es.name == "world":
            report["examples"] = [
                {
                    "query": s.id,
                    "text": s.text,
                    "lat": s.lat,
                    "lon": s.lon,
                    "top": [
                        {
                            "id": es.gallery[j].id,
                            "lat": es.gallery[j].lat,
                            "lon": es.gallery[j].lon,
                            "true": es.gallery[j].id == s.id,
                        }
                        for j in top[i]
                    ],
                }
                for i, s in enumerate(es.queries[:examples])
            ]
            report["world_errors"] = [
                {"lat": s.lat, "lon": s.lon, "rank": int(ranks[i])}
                for i, s in enumerate(es.queries)
            ]
    return report
