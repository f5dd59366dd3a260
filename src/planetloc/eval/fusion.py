"""Late fusion: one place asked of several separately trained models at once (a description
to a text model, a street view to an image model), scored by the weighted sum of their scores.

The weighted sum of inner products is itself one inner product of concatenated vectors,
``sum_i w_i q_i . g_i = [w_1 q_1, ..., w_n q_n] . [g_1, ..., g_n]``, so a fused query is an
ordinary query against an ordinary gallery matrix: every ranking path (exact, blocked, the
m-nearest protocol, an index store) serves it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from planetloc.errors import PlanetlocError
from planetloc.eval.evaluate import (
    Gallery,
    check_query,
    encode_gallery_in_memory,
    encode_queries,
    rank_set,
    set_metrics,
)
from planetloc.eval.protocols import EvalSet
from planetloc.eval.retrieval import Queries
from planetloc.model.inference import Encoder


def late_fusion(
    queries: Sequence[np.ndarray], galleries: Sequence[np.ndarray], weights: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Query (Q, sum E_i) and gallery (G, sum E_i) matrices whose inner products are
    ``sum_i weights[i] * queries[i] @ galleries[i].T``; each model's own score keeps its scale."""
    if not (len(queries) == len(galleries) == len(weights)) or not queries:
        raise PlanetlocError("late fusion needs one query matrix, gallery and weight per model")
    for w in weights:
        if not math.isfinite(w) or w < 0:
            raise PlanetlocError(f"a fusion weight must be finite and at least 0, got {w!r}")
    if not any(weights):
        raise PlanetlocError("late fusion needs at least one positive weight")
    nq, ng = len(queries[0]), len(galleries[0])
    for i, (q, g) in enumerate(zip(queries, galleries, strict=True)):
        if len(q) != nq or len(g) != ng:
            raise PlanetlocError(
                f"model {i}: {len(q)} queries and {len(g)} tiles, the first model has {nq} and {ng}"
            )
        if q.shape[1] != g.shape[1]:
            raise PlanetlocError(
                f"model {i}: query width {q.shape[1]} differs from its gallery's {g.shape[1]}"
            )
    fused_q = np.concatenate(
        [np.asarray(q, dtype=np.float64) * w for q, w in zip(queries, weights, strict=True)], axis=1
    )
    fused_g = np.concatenate([np.asarray(g, dtype=np.float64) for g in galleries], axis=1)
    return fused_q, fused_g


def embed_set(model: Any, es: EvalSet, query: str) -> tuple[np.ndarray, np.ndarray]:
    """One single-modality model's query embeddings (set order) and gallery embeddings (by
    table row) of one evaluation set, encoded once so that every fusion weight reuses them."""
    if query not in ("text", "image"):
        raise PlanetlocError(f"late fusion combines single-modality queries, got {query!r}")
    check_query(model, query, model.cfg.joint_score)
    encoder = Encoder(model)
    queries, _ = encode_queries(
        encoder, es.table, es.queries, query=query, joint_score=model.cfg.joint_score
    )
    gallery = encode_gallery_in_memory(encoder, es.table, es.gallery)
    emb = queries.text if query == "text" else queries.view
    return np.asarray(emb), gallery.embeddings


def fused_metrics(
    parts: Sequence[tuple[np.ndarray, np.ndarray]],
    weights: Sequence[float],
    es: EvalSet,
    *,
    m: int | None = None,
    nearest: str = "planetloc",
) -> dict[str, Any]:
    """Metrics of the weighted score sum of ``parts`` (from :func:`embed_set`) on one set,
    on the full gallery (``m`` None) or under the m-nearest protocol."""
    q, g = late_fusion([p[0] for p in parts], [p[1] for p in parts], weights)
    ranking = rank_set(Queries(text=q), Gallery(embeddings=g, phys={}), es, m=m, nearest=nearest)
    return set_metrics(ranking, es, protocol=nearest)
