"""Train the text-to-signature baseline on a manifest's train split and score every eval set."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from planetloc.baselines.text_to_signature import TextToSignature
from planetloc.data.images import load_tiles
from planetloc.data.table import SampleTable, read_table
from planetloc.errors import PlanetlocError
from planetloc.eval.metrics import KS, recall_at_k
from planetloc.eval.protocols import evaluation_sets, evaluation_table
from planetloc.model.signatures import physical_signatures
from planetloc.ranking import order, rank_of


def _signatures(table: SampleTable, rows: np.ndarray, batch: int = 256) -> dict[str, torch.Tensor]:
    paths = [table.resolve(p) for p in table.sat_path[rows].tolist()]
    parts = []
    for i in range(0, len(paths), batch):
        parts.append(physical_signatures(load_tiles(paths[i : i + batch])))
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def evaluate_text_to_signature(
    data: str, *, alpha: float = 1.0, examples: int = 3
) -> dict[str, Any]:
    """Fit on ``train``, report chance and baseline recall for each evaluation set.

    Returns ``{"method": ..., "train_samples": N, "sets": {name: {...}}}`` where each set
    has ``queries``, ``gallery``, ``chance`` (R@k of a random ranking, percent) and
    ``baseline`` (R@k of this method, percent). ``examples`` lists the top-5 tiles of the
    first few world-set queries.
    """
    train = read_table(data, splits=("train",))
    if not len(train):
        raise PlanetlocError(f"{train.path}: no 'train' samples to fit the baseline on")
    rows = np.arange(len(train))
    model = TextToSignature.fit([str(t) for t in train.text], _signatures(train, rows), alpha=alpha)
    table = evaluation_table(data)
    sets = evaluation_sets(table)
    tile_vecs = model.encode_tiles(_signatures(table, np.arange(len(table))))
    report: dict[str, Any] = {
        "method": "text-to-signature (tf-idf + ridge)",
        "train_samples": len(train),
        "sets": {},
    }
    for es in sets:
        scores = (
            model.encode_text([str(t) for t in table.text[es.queries]]) @ tile_vecs[es.gallery].T
        )
        true = np.searchsorted(es.gallery, es.true_rows)
        ranks = rank_of(scores, true)
        if es.name == "world":
            best = order(scores[:examples])[:, :5]
            report["examples"] = [
                {
                    "query": str(table.id[q]),
                    "text": str(table.text[q]),
                    "top": [
                        {
                            "id": str(table.id[es.gallery[j]]),
                            "score": float(scores[i, j]),
                            "true": int(es.gallery[j]) == int(q),
                        }
                        for j in best[i].tolist()
                    ],
                }
                for i, q in enumerate(es.queries[:examples].tolist())
            ]
        report["sets"][es.name] = {
            "queries": int(len(es.queries)),
            "gallery": int(len(es.gallery)),
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
