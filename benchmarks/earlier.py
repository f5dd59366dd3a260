"""Resuming a benchmark from its own results file: the runs an earlier invocation measured.

Not a benchmark. The long comparisons (``synthcore.py``, ``crossview.py``) train and evaluate
one (recipe, seed) at a time, and each run depends on nothing but its own settings; an earlier
results file with the same step budget therefore holds runs that can be kept as they are
when the benchmark is run again, resumed, or given more seeds or variants.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def earlier_results(path: Path, steps: int, seeds: list[int]) -> dict[str, Any]:
    """The results file at ``path`` when it was written with ``steps`` steps, its ``runs``
    (name -> seed -> run) kept for ``seeds`` only; ``{}`` when absent, unreadable or another
    budget."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(old, dict) or old.get("steps") != steps:
        return {}
    keep = {str(s) for s in seeds}
    old["runs"] = {
        name: {s: run for s, run in per_seed.items() if s in keep}
        for name, per_seed in old.get("runs", {}).items()
    }
    return old
