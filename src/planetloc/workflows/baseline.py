"""Fit and evaluate the text-to-signature baseline, and write its report files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from planetloc.atomic import write_text
from planetloc.baselines.evaluate import evaluate_text_to_signature, markdown_table
from planetloc.eval.figures import retrieval_examples_png
from planetloc.eval.protocols import evaluation_table


def run_baseline(data: str, out: str | Path) -> tuple[dict[str, Any], str]:
    """Write baseline.json/.md/_examples.png in ``out``; return the report and its table."""
    folder = Path(out)
    report = evaluate_text_to_signature(data)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "baseline.json", json.dumps(report, indent=1) + "\n")
    table = markdown_table(report)
    write_text(folder / "baseline.md", table + "\n")
    examples = report.get("examples", [])
    if examples:
        tiles = evaluation_table(data)
        path_of = dict(zip(tiles.id.tolist(), tiles.sat_path.tolist(), strict=True))
        retrieval_examples_png(
            [
                (
                    ex["text"],
                    [
                        (str(tiles.resolve(path_of[t["id"]])), t["true"], t["score"])
                        for t in ex["top"]
                    ],
                )
                for ex in examples
            ],
            folder / "baseline_examples.png",
            title="text-to-signature baseline: top-5 tiles",
        )
    return report, table
