"""Several methods side by side: tables, recall curves, and answered example queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from planetloc.atomic import write_text
from planetloc.eval.figures import recall_curve_png
from planetloc.eval.report import comparison_table, recall_curve
from planetloc.geo.coords import haversine_m


def write_comparison(reports: dict[str, dict[str, Any]], out: str | Path) -> str:
    """Write comparison.md/.json and comparison_recall.png; return the markdown tables."""
    folder = Path(out)
    table = comparison_table(reports) + "\n\n" + comparison_table(reports, "m")
    write_text(folder / "comparison.md", table + "\n")
    write_text(
        folder / "comparison.json",
        json.dumps(
            {m: {"model": r.get("model", {}), "sets": r["sets"]} for m, r in reports.items()},
            indent=1,
        )
        + "\n",
    )
    recall_curve_png(
        {m: recall_curve(r) for m, r in reports.items()},
        folder / "comparison_recall.png",
        title="world-level test: recall@K",
    )
    return table


def answered_examples(report: dict[str, Any], regions: dict[str, str]) -> str:
    """The report's example queries with their top-5 locations and distances to the truth.

    ``regions`` maps tile ids to region names.
    """
    lines = []
    for ex in report.get("examples", []):
        lines.append(
            f'\n  "{ex["text"][:150]}..."\n  true location: {ex["lat"]:.5f}, {ex["lon"]:.5f}'
        )
        for rank, top in enumerate(ex["top"], start=1):
            err = float(haversine_m(ex["lat"], ex["lon"], top["lat"], top["lon"]))
            mark = "  <- true tile" if top["true"] else ""
            lines.append(
                f"   #{rank} {top['lat']:.5f}, {top['lon']:.5f}  "
                f"{regions.get(top['id'], '?'):24s} {err:8.0f} m{mark}"
            )
    return "\n".join(lines)
