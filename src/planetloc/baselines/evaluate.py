"""Train the text-to-signature baseline on a manifest's train split and score every eval set."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from planetloc.baselines.text_to_signature import TextToSignature
from planetloc.data.images import load_tiles
from planetloc.data.manifest import Manifest
from planetloc.eval.metrics import recall_at_k, true_ranks
from planetloc.eval.protocols import evaluation_sets
from planetloc.model.signatures import physical_signatures

KS = (1, 5, 10)


def _signatures(manifest: Manifest, samples: list, batch: int = 256) -> dict[str, torch.Tensor]:
    tiles = load_tiles(manifest, samples)
    parts = [physical_signatures(tiles[i : i + batch]) for i in range(0, len(tiles), batch)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def evaluate_text_to_signature(
    manifest: Manifest, *, alpha: float = 1.0, examples: int = 3
) -> dict[str, Any]:
    """Fit on ``train``, report chance and baseline recall for each evaluation set.

    Returns ``{"method": ..., "train_samples": N, "sets": {name: {...}}}`` where each set
    has ``queries``, ``gallery``, ``chance`` (R@k of a random ranking, percent) and
    ``baseline`` (R@k of this method, percent). ``examples`` lists the top-5 tiles of the
    first few world-set queries.
    """
    train = manifest.by_split("train")
    if not train:
        raise ValueError(f"{manifest.path}: no 'train' samples to fit the baseline on")
    model = TextToSignature.fit([s.text for s in train], _signatures(manifest, train), alpha=alpha)
    sets = evaluation_sets(manifest.samples)
    needed = {s.id: s for es in sets for s in es.gallery}
    ordered = list(needed.values())
    tile_vecs = model.encode_tiles(_signatures(manifest, ordered))
    index_of = {s.id: i for i, s in enumerate(ordered)}
    report: dict[str, Any] = {
        "method": "text-to-signature (tf-idf + ridge)",
        "train_samples": len(train),
        "sets": {},
    }
    for es in sets:
        gallery_vecs = tile_vecs[[index_of[s.id] for s in es.gallery]]
        scores = model.encode_text([q.text for q in es.queries]) @ gallery_vecs.T
        ranks = true_ranks(scores, np.asarray(es.true_index))
        if es.name == "world":
            report["examples"] = [
                {
                    "query": q.id,
                    "text": q.text,
                    "top": [
                        {
                            "id": es.gallery[j].id,
                            "score": float(scores[i, j]),
                            "true": es.gallery[j].id == q.id,
                        }
                        for j in np.argsort(-scores[i])[:5]
                    ],
                }
                for i, q in enumerate(es.queries[:examples])
            ]
        report["sets"][es.name] = {
            "queries": len(es.queries),
            "gallery": len(es.gallery),
            "chance": {f"R@{k}": 100.0 * min(k, len(es.gallery)) / len(es.gallery) for k in KS},
            "baseline": recall_at_k(ranks, KS),
        }
    return report


def markdown_table(report: dict[str, Any]) -> str:
    """The report as a markdown table: one row per evaluation set."""
    lines = [
        "| set | queries | gallery | chance R@1 | R@1 | R@5 | R@10 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["sets"].items():
        b = row["baseline"]
        lines.append(
            f"| {name} | {row['queries']} | {row['gallery']} | {row['chance']['R@1']:.2f} "
            f"| {b['R@1']:.2f} | {b['R@5']:.2f} | {b['R@10']:.2f} |"
        )
    return "\n".join(lines)
