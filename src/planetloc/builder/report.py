"""The end-of-run summary of a build report, as text for a terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _lvlm_line(d: dict[str, Any]) -> str:
    return (
        f"LVLM: {d['requests']} requests, {d['cached']} cached, "
        f"{d['prompt_tokens']} prompt + {d['completion_tokens']} completion tokens"
    )


def format_report(report: dict[str, Any], path: str | Path | None = None) -> str:
    """What ``report.json`` says, in a few lines: per stage counts and rate, LVLM usage, the
    dataset, quarantined samples, and what every run of this build spent together."""
    lines = []
    for stage, part in report["stages"].items():
        counts = ", ".join(f"{k} {v}" for k, v in part["counts"].items()) or "nothing to do"
        rate = f" ({part['samples_per_s']} samples/s)" if part.get("samples_per_s") else ""
        lines.append(f"{stage}: {counts}{rate}")
        if "describe" in part:
            d = part["describe"]
            lines.append(f"  {_lvlm_line(d)}, rejected {d['rejected'] or 'none'}")
    if "dataset" in report:
        d = report["dataset"]
        lines.append(f"dataset: {d['samples']} samples, splits {d['splits']}, states {d['states']}")
    q = report["quarantine"]
    if q["count"]:
        lines.append(f"quarantined: {q['count']} samples {q['by_stage']}")
        for item in q["samples"][:5]:
            lines.append(f"  {item['id']} [{item['stage']}]: {item['reason']}")
        lines.append("  (all in report.json; rerun with --retry-quarantined to try them again)")
    totals = report.get("totals")
    if totals and totals["runs"] > 1:
        spent = totals["stages"]
        http = ", ".join(
            f"{stage} {part['http']['requests']}" for stage, part in spent.items() if "http" in part
        )
        parts = [f"HTTP requests {http}"] if http else []
        if "describe" in spent.get("describe", {}):
            parts.append(_lvlm_line(spent["describe"]["describe"]))
        interrupted = sum(r["status"] != "finished" for r in report.get("runs", []))
        note = f" ({interrupted} stopped or interrupted)" if interrupted else ""
        lines.append(f"all {totals['runs']} runs{note}: " + "; ".join(parts or ["nothing spent"]))
    if path is not None:
        lines.append(f"report: {path}")
    return "\n".join(lines)
