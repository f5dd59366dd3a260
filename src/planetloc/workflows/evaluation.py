"""An evaluation run: choose the model, evaluate every set, write the report files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from planetloc.atomic import write_text
from planetloc.data.caches import cache_root
from planetloc.devices import pick_device
from planetloc.eval.evaluate import check_options, default_index_dir, evaluate_model
from planetloc.eval.protocols import evaluation_table
from planetloc.eval.report import check_name, write_report
from planetloc.workflows.models import ModelForEvaluation, trained, zero_shot


def alpha_for(loaded: ModelForEvaluation, given: float | None) -> tuple[float, str]:
    """The re-ranking weight to use and where it came from (never from test data)."""
    if given is not None:
        return given, "given (--rerank-alpha)"
    if "alpha" in loaded.selection:
        return float(loaded.selection["alpha"]), "chosen on val when the run finished"
    return 0.0, "none (the run chose no re-ranking weight)"


def run_evaluation(
    data: str,
    out: str,
    *,
    name: str = "eval",
    checkpoint: str | None = None,
    backbone: str = "minilm-cnn",
    m: int = 100,
    nearest: str = "planetloc",
    rerank_alpha: float | None = None,
    query: str | None = None,
    joint_score: str | None = None,
    text_style: str | None = None,
    device: str = "auto",
    progress: bool = True,
    loaded: ModelForEvaluation | None = None,
    text_cache: str = "auto",
) -> dict[str, Any]:
    """Evaluate a checkpoint (or a zero-shot model) and write ``<name>.json/.md/_*.png``.

    ``text_cache``: where a frozen trunk's query features are kept (``auto``: beside the
    data, as training keeps its own; ``off``; or a folder)."""
    check_name(name)  # before any work: the report's files are named by it
    loaded = loaded or (trained(checkpoint) if checkpoint else zero_shot(backbone, data))
    alpha, source = alpha_for(loaded, rerank_alpha)
    # Options are refused before the table is read (minutes at a million rows), and it is
    # read once: the report's figures need it too.
    check_options(loaded.model, m, nearest, query, joint_score)
    table = evaluation_table(data)
    report = evaluate_model(
        loaded.model,
        data,
        fingerprint=loaded.fingerprint,
        index_dir=default_index_dir(out, loaded.fingerprint),
        device=pick_device(device),
        m=m,
        nearest=nearest,
        rerank_alpha=alpha,
        rerank_source=source,
        query=query,
        joint_score=joint_score,
        text_style=text_style,
        progress=progress,
        model_info=loaded.info,
        text_cache=cache_root(data, text_cache),
        table=table,
    )
    # What the run chose on its val split (None when it chose nothing): part of the schema.
    report["selection"] = loaded.selection or None
    write_report(report, table, out, name=name)
    return report


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=1) + "\n")
