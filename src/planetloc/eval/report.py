"""Write an evaluation report: JSON (stable schema), a markdown table and pictures."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from planetloc.atomic import write_text
from planetloc.data.table import SampleTable
from planetloc.errors import PlanetlocError
from planetloc.eval.figures import error_map_png, recall_curve_png, retrieval_examples_png

TABLE_KEYS = ("R@1", "R@5", "R@10", "L@50", "L@100", "median_error_km")


def check_name(name: str) -> str:
    """A report's file stem: a plain name, never a path (which could write anywhere)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}", name) or ".." in name:
        raise PlanetlocError(
            f"report name {name!r} must be a plain file name (letters, digits, . _ + -)"
        )
    return name


def comparison_table(reports: dict[str, dict[str, Any]], protocol: str = "full") -> str:
    """Markdown: one row per (method, evaluation set); ``protocol`` is ``full`` or ``m``."""
    lines = [
        f"| method | backbone | set | queries | candidates | {' | '.join(TABLE_KEYS)} |",
        "|---|---|---|---:|---:|" + "---:|" * len(TABLE_KEYS),
    ]
    for method, report in reports.items():
        backbone = report.get("model", {}).get("backbone", "?")
        key = "full" if protocol == "full" else f"m{report['protocol']['m']}"
        for name, entry in report["sets"].items():
            row = entry[key]
            values = " | ".join(_cell(row[k]) for k in TABLE_KEYS)
            lines.append(
                f"| {method} | {backbone} | {name} | {row['queries']} | {row['candidates']} "
                f"| {values} |"
            )
    return "\n".join(lines)


def _cell(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN: no value (e.g. no finite error)


def region_table(report: dict[str, Any]) -> str:
    """Markdown: full-gallery recall of each region, per evaluation set."""
    lines = ["| set | region | queries | R@1 | R@5 | R@10 |", "|---|---|---:|---:|---:|---:|"]
    for name, entry in report["sets"].items():
        for region, row in entry["regions"].items():
            recall = " | ".join(f"{row[k]:.2f}" for k in ("R@1", "R@5", "R@10"))
            lines.append(f"| {name} | {region} | {row['queries']} | {recall} |")
    return "\n".join(lines)


def recall_curve(report: dict[str, Any], k_max: int = 50) -> list[float]:
    ranks = [e["rank"] for e in report.get("world_errors", [])]
    if not ranks:
        return []
    return [100.0 * sum(r < k for r in ranks) / len(ranks) for k in range(1, k_max + 1)]


def write_report(
    report: dict[str, Any], table: SampleTable, out: str | os.PathLike[str], *, name: str
) -> None:
    """Write ``<name>.json`` and ``<name>.md``, and ``<name>_{recall,errors,examples}.png``."""
    check_name(name)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / f"{name}.json", json.dumps(report, indent=1, allow_nan=False) + "\n")
    markdown = comparison_table({name: report}) + "\n\n" + comparison_table({name: report}, "m")
    markdown += "\n\n" + region_table(report)
    write_text(folder / f"{name}.md", markdown + "\n")
    curve = recall_curve(report)
    if curve:
        recall_curve_png(
            {name: curve}, folder / f"{name}_recall.png", title=f"{name}: world-level recall@K"
        )
        points = [(e["lat"], e["lon"], e["rank"]) for e in report["world_errors"]]
        error_map_png(
            points, folder / f"{name}_errors.png", title=f"{name}: rank of the true tile per query"
        )
    wanted = {t["id"] for ex in report.get("examples", []) for t in ex["top"]}
    path_of = {
        str(i): table.resolve(p)
        for i, p in zip(table.id.tolist(), table.sat_path.tolist(), strict=True)
        if i in wanted
    }
    examples = [
        (ex["text"], [(str(path_of[t["id"]]), t["true"], i + 1) for i, t in enumerate(ex["top"])])
        for ex in report.get("examples", [])
    ]
    if examples:
        retrieval_examples_png(
            examples, folder / f"{name}_examples.png", title=f"{name}: top-5 tiles"
        )
