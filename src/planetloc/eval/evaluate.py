"""Evaluate a model on a dataset: every evaluation set, both protocols, per-region tables.

The test gallery is encoded once, streaming, into an index store (reused when its shards
still match: same model, same tiles); queries are ranked against it in bounded memory
(:mod:`planetloc.eval.retrieval`). Nothing here chooses a setting: the re-ranking weight is
given, or read from the run, where it was chosen on the validation split
(:mod:`planetloc.eval.selection`).

Report schema (``planetloc-evaluation-v2``)::

    {"schema", "model": {fingerprint, method, backbone, query, checkpoint},
     "protocol": {"m", "nearest", "ties", "query", "joint_score", "text_style",
                  "rerank": {"alpha", "top", "source"}},
     "truncated_fraction",
     "sets": {set: {"full": metrics, "m<m>": metrics,
                    "regions": {region: {"queries", "R@1", "R@5", "R@10"}}}},
     "examples": [{query, text, lat, lon, top: [{id, lat, lon, true}]}],
     "world_errors": [{lat, lon, rank, rank_m}]}   (rank_m: under the m-nearest protocol)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from planetloc.data.images import decode_rgb, read_image_bytes
from planetloc.data.table import SampleTable
from planetloc.errors import PlanetlocError
from planetloc.eval.metrics import KS, nearest_candidates, summarise
from planetloc.eval.protocols import EvalSet, evaluation_sets, evaluation_table
from planetloc.eval.retrieval import (
    DEFAULT_BUDGET_BYTES,
    Queries,
    Ranking,
    Rerank,
    Scorer,
    rank_candidates,
    rank_full,
)
from planetloc.model.inference import Embeddings, Encoder
from planetloc.model.trunk_cache import TrunkCache

SCHEMA = "planetloc-evaluation-v2"
RERANK_TOP = 50
TIE_RULE = "score, highest first; equal scores by gallery row, lower first"


@dataclass
class Gallery:
    """Gallery embeddings by table row (arrays or an index store's memory maps)."""

    embeddings: Any
    phys: dict[str, Any]


def _tiles(table: SampleTable, rows: np.ndarray, size: int):
    for r in rows.tolist():
        path = table.resolve(table.sat_path[r])
        yield decode_rgb(read_image_bytes(path), size, source=str(path))


def _views(table: SampleTable, rows: np.ndarray, model: Any):
    from planetloc.data.stream import north_aligned

    cfg = model.cfg
    for r in rows.tolist():
        rel = table.street_path[r]
        if not rel:
            raise PlanetlocError(
                f"{table.path}: sample {table.id[r]!r} has no street view (street_path), which "
                "an image-query model needs"
            )
        path = table.resolve(rel)
        view = decode_rgb(read_image_bytes(path), tuple(cfg.street_size), source=str(path))
        if cfg.street_align == "north":
            view = north_aligned(view, float(table.heading[r]), str(path))
        yield view


def query_texts(table: SampleTable, rows: np.ndarray, style: str | None) -> list[str]:
    """The queries' descriptions, or their phrasings in ``style``: the description itself
    where it is written in that style (``meta.style``), else ``meta.alt_texts[style]``."""
    if style is None:
        return [str(t) for t in table.text[rows]]
    if table.meta is None:
        raise PlanetlocError("a text style needs the samples' meta (alt_texts)")
    out = []
    for r in rows.tolist():
        meta = table.meta[r]
        if meta.get("style") == style:
            out.append(str(table.text[r]))
            continue
        alt = (meta.get("alt_texts") or {}).get(style)
        if not alt:
            raise PlanetlocError(
                f"{table.path}: sample {table.id[r]!r} has no {style!r} phrasing in meta.alt_texts"
            )
        out.append(alt)
    return out


def encode_queries(
    encoder: Encoder,
    table: SampleTable,
    rows: np.ndarray,
    *,
    query: str,
    joint_score: str,
    text_style: str | None = None,
    progress: bool = False,
) -> tuple[Queries, float | None]:
    """The queries of ``rows`` as the model reads them, and the share of cut descriptions."""
    texts = views = phys = None
    truncated = None
    if query in ("text", "joint"):
        emb = encoder.encode_texts(query_texts(table, rows, text_style), progress=progress)
        texts, phys = emb.global_, emb.phys
        truncated = float(emb.truncated.mean()) if len(emb) else 0.0  # type: ignore[union-attr]
    if query in ("image", "joint"):
        views = encoder.encode_views(
            _views(table, rows, encoder.model), total=len(rows), progress=progress
        )
    return Queries(text=texts, view=views, joint=joint_score, phys=phys), truncated


def encode_gallery_in_memory(
    encoder: Encoder, table: SampleTable, rows: np.ndarray, *, progress: bool = False
) -> Gallery:
    """Gallery embeddings held in memory, indexed by table row (for small sets)."""
    emb: Embeddings = encoder.encode_tiles(
        _tiles(table, rows, encoder.model.cfg.image_size), total=len(rows), progress=progress
    )
    dim = emb.global_.shape[1]
    full = np.zeros((len(table), dim), dtype=np.float32)
    full[rows] = emb.global_
    phys = {}
    for k, v in emb.phys.items():
        phys[k] = np.zeros((len(table), v.shape[1]), dtype=np.float32)
        phys[k][rows] = v
    return Gallery(embeddings=full, phys=phys)


def rank_set(
    queries: Queries,
    gallery: Gallery,
    es: EvalSet,
    *,
    m: int | None,
    nearest: str = "planetloc",
    rerank_alpha: float = 0.0,
    keep: int = 10,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    progress: bool = False,
) -> Ranking:
    """Rank one set's queries (rows of ``queries`` in set order) under one protocol."""
    scorer = Scorer(queries, gallery.embeddings)
    rerank = None
    if rerank_alpha:
        if queries.phys is None:
            raise PlanetlocError("physical re-ranking needs text queries")
        rerank = Rerank(rerank_alpha, RERANK_TOP, queries.phys, gallery.phys)
    true = es.true_rows
    if m is None:
        return rank_full(
            scorer,
            true,
            es.gallery,
            keep=keep,
            rerank=rerank,
            budget_bytes=budget_bytes,
            progress=f"ranking {es.name}" if progress else None,
        )
    gll = es.table.latlon(es.gallery)
    local_true = np.searchsorted(es.gallery, true)
    cand_local = nearest_candidates(gll[local_true], gll, m, true_rows=local_true, protocol=nearest)
    return rank_candidates(
        scorer, true, es.gallery[cand_local], keep=keep, rerank=rerank, protocol=nearest
    )


def set_metrics(ranking: Ranking, es: EvalSet, *, protocol: str = "planetloc") -> dict[str, Any]:
    """Metrics of one ranking of one set."""
    top1 = ranking.top[:, 0] if ranking.top.shape[1] else np.full(len(es.queries), -1)
    all_ll = es.table.latlon()
    return summarise(ranking.ranks, top1, es.true_rows, all_ll, ks=KS, protocol=protocol) | {
        "queries": int(len(es.queries)),
        "gallery": int(len(es.gallery)),
        "candidates": int(ranking.candidates),
    }


def check_query(model: Any, query: str, joint_score: str) -> None:
    """Refuse a query kind the model was not trained for, before any encoding."""
    from planetloc.model.planet import JOINT_SCORES, QUERY_KINDS

    if query not in QUERY_KINDS:
        raise PlanetlocError(f"query must be one of {', '.join(QUERY_KINDS)}, got {query!r}")
    if joint_score not in JOINT_SCORES:
        raise PlanetlocError(f"joint score must be one of {', '.join(JOINT_SCORES)}")
    cfg = model.cfg
    if query in ("text", "joint") and not cfg.uses_text:
        raise PlanetlocError("this model was trained on street images only (model.query=image)")
    if query in ("image", "joint") and not cfg.uses_street:
        raise PlanetlocError("this model was not trained on street images (model.query=text)")


def check_options(
    model: Any, m: int, nearest: str, query: str | None, joint_score: str | None
) -> tuple[str, str]:
    """Refuse bad evaluation options before any work; the query kind and joint score used."""
    if m < 1:
        raise PlanetlocError(f"--m must be at least 1, got {m}")
    if nearest not in ("planetloc", "cvg-text"):
        raise PlanetlocError(f"--nearest must be planetloc or cvg-text, got {nearest!r}")
    query = query or model.cfg.query
    joint_score = joint_score or model.cfg.joint_score
    check_query(model, query, joint_score)
    return query, joint_score


def _subset(queries: Queries, positions: np.ndarray) -> Queries:
    return queries.take(positions)


def evaluate_split(
    model: Any,
    es: EvalSet,
    *,
    device: str = "cpu",
    trunk_cache: TrunkCache | None = None,
    query: str | None = None,
    joint_score: str | None = None,
) -> dict[str, float]:
    """Full-gallery metrics of one split against itself (training-time validation), queried
    as the model was trained unless ``query`` / ``joint_score`` say otherwise."""
    query = query or model.cfg.query
    joint_score = joint_score or model.cfg.joint_score
    check_query(model, query, joint_score)
    encoder = Encoder(model, device=device, trunk_cache=trunk_cache)
    queries, _ = encode_queries(encoder, es.table, es.queries, query=query, joint_score=joint_score)
    gallery = encode_gallery_in_memory(encoder, es.table, es.gallery)
    metrics = set_metrics(rank_set(queries, gallery, es, m=None), es)
    return {k: v for k, v in metrics.items() if k.startswith("R@")}


def evaluate_model(
    model: Any,
    data: str | os.PathLike[str],
    *,
    fingerprint: str,
    index_dir: str | os.PathLike[str],
    device: str = "cpu",
    m: int = 100,
    nearest: str = "planetloc",
    rerank_alpha: float = 0.0,
    rerank_source: str = "none",
    query: str | None = None,
    joint_score: str | None = None,
    text_style: str | None = None,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    progress: bool = True,
    examples: int = 3,
    model_info: dict[str, Any] | None = None,
    text_cache: Path | None = None,
    table: SampleTable | None = None,
) -> dict[str, Any]:
    """The evaluation report of ``model`` on every evaluation set of ``data`` (see module).

    ``text_cache``: a folder where a frozen text trunk's features of the queries are kept,
    so that every model sharing that trunk (ablations, seeds, recipes) computes them once.
    ``table``: ``evaluation_table(data)`` when the caller has read it (at a million rows it
    takes minutes and over a GB to read).
    """
    from planetloc.index.store import BuildOptions, build_index, open_vectors

    query, joint_score = check_options(model, m, nearest, query, joint_score)
    table = evaluation_table(data) if table is None else table
    sets = evaluation_sets(table)
    query_rows = np.unique(np.concatenate([s.queries for s in sets]))
    has_text = query in ("text", "joint")
    # A missing phrasing stops here, before any work.
    texts = query_texts(table, query_rows, text_style) if has_text else []
    if query in ("image", "joint"):
        missing = [str(table.id[r]) for r in query_rows if not table.street_path[r]]
        if missing:
            raise PlanetlocError(
                f"{table.path}: sample {missing[0]!r} (and {len(missing) - 1} more) has no "
                "street view (street_path), which image queries need"
            )
    cache = None
    if text_cache is not None and has_text and model.text_trunk_frozen:
        cache = TrunkCache.build(
            text_cache,
            model,
            texts,
            device=device,
            progress=progress,
        )
    encoder = Encoder(model, device=device, trunk_cache=cache)
    gallery_rows = np.arange(len(table))
    # Every row of the test table is a gallery tile (queries' own tiles and distractors).
    build_index(
        encoder,
        fingerprint,
        table,
        gallery_rows,
        index_dir,
        options=BuildOptions(require_tile_size=False),
        progress=progress,
    )
    stored = open_vectors(index_dir)
    gallery = Gallery(embeddings=stored.embeddings, phys=stored.phys)
    queries, truncated = encode_queries(
        encoder,
        table,
        query_rows,
        query=query,
        joint_score=joint_score,
        text_style=text_style,
        progress=progress,
    )
    position = {int(r): i for i, r in enumerate(query_rows.tolist())}
    # Street images carry no physical cues to re-rank with: image queries are ranked by the
    # embedding alone, and the report says so rather than echoing the requested weight.
    alpha = rerank_alpha if has_text else 0.0
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "model": {"fingerprint": fingerprint, **(model_info or {})},
        "protocol": {
            "m": m,
            "nearest": nearest,
            "ties": TIE_RULE,
            "query": query,
            "joint_score": joint_score if query == "joint" else None,
            "text_style": text_style,
            "rerank": {
                "alpha": alpha,
                "top": RERANK_TOP,
                "source": rerank_source if has_text else "none",
            },
        },
        "truncated_fraction": truncated,
        "sets": {},
    }
    for es in sets:
        q = _subset(queries, np.asarray([position[int(r)] for r in es.queries]))
        full = rank_set(
            q, gallery, es, m=None, rerank_alpha=alpha, budget_bytes=budget_bytes, progress=progress
        )
        near = rank_set(
            q, gallery, es, m=m, nearest=nearest, rerank_alpha=alpha, budget_bytes=budget_bytes
        )
        entry = {
            "full": set_metrics(full, es),
            f"m{m}": set_metrics(near, es, protocol=nearest),
            "regions": _regions(full, es),
        }
        report["sets"][es.name] = entry
        if es.name == "world":
            shown = es.queries[:examples].tolist()
            # The examples quote each query as it was asked (in --text-style's phrasing).
            quoted = (
                [texts[position[r]] for r in shown]
                if has_text
                else [str(table.text[r]) for r in shown]
            )
            report["examples"] = _examples(full, es, table, quoted)
            report["world_errors"] = [
                {
                    "lat": float(table.lat[r]),
                    "lon": float(table.lon[r]),
                    "rank": int(full.ranks[i]),
                    "rank_m": int(near.ranks[i]),
                }
                for i, r in enumerate(es.queries.tolist())
            ]
    return report


def _regions(ranking: Ranking, es: EvalSet) -> dict[str, dict[str, float]]:
    regions: dict[str, dict[str, float]] = {}
    names = es.table.region[es.queries]
    for region in sorted(set(names.tolist())):
        mask = names == region
        r = ranking.ranks[mask]
        regions[region] = {"queries": int(mask.sum())} | {
            f"R@{k}": float(100 * np.mean((r >= 0) & (r < k))) for k in KS
        }
    return regions


def _examples(
    ranking: Ranking, es: EvalSet, table: SampleTable, texts: list[str]
) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(es.queries[: len(texts)].tolist()):
        out.append(
            {
                "query": str(table.id[r]),
                "text": texts[i],
                "lat": float(table.lat[r]),
                "lon": float(table.lon[r]),
                "top": [
                    {
                        "id": str(table.id[j]),
                        "lat": float(table.lat[j]),
                        "lon": float(table.lon[j]),
                        "true": int(j) == r,
                    }
                    for j in ranking.top[i, :5].tolist()
                    if j >= 0
                ],
            }
        )
    return out


def default_index_dir(out: str | os.PathLike[str], fingerprint: str) -> Path:
    """Where ``evaluate`` keeps the test gallery's index between runs."""
    return Path(out) / f"gallery-index-{fingerprint[:12]}"
