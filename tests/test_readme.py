"""The README's measured numbers are exactly what the benchmarks wrote."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tables():
    spec = importlib.util.spec_from_file_location(
        "readme_tables", ROOT / "scripts" / "readme_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_tables_equal_what_the_results_files_render() -> None:
    tables = _tables()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    names = [m["name"] for m in tables.MARKER.finditer(text)]
    assert {"demo", "synthcore", "train_scale", "machine"} <= set(names)
    assert set(names) <= set(tables.RENDERERS), "a README marker without a renderer"
    assert tables.update(text) == text, "run scripts/readme_tables.py after a benchmark"


def test_tables_follow_the_results_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tables = _tables()
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    monkeypatch.setattr(tables, "RESULTS", results)
    data = json.loads((results / "street_render.json").read_text())
    before = tables.render("street_render")
    assert f"| {data['panoramas_per_s']:,.1f} |" in before
    data["panoramas_per_s"] = 1234.5
    (results / "street_render.json").write_text(json.dumps(data))
    assert "| 1,234.5 |" in tables.render("street_render")
    (results / "street_render.json").unlink()
    assert "street_render.json` is absent" in tables.render("street_render")
    (results / "street_render.json").write_text('{"panoramas_per_s": NaN}')
    with pytest.raises(ValueError, match="holds NaN"):
        tables.render("street_render")


def test_a_results_file_written_under_another_name_says_how_to_remake_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = _tables()
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    missing = tables.render("crossview_long")
    assert "`benchmarks/results/crossview_long.json` is absent" in missing
    assert (
        "crossview.py --steps 500" in missing
        and "--out benchmarks/results/crossview_long.json" in missing
    )
