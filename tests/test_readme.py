"""The README's measured numbers are exactly what the benchmarks wrote."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
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


def test_the_style_ceiling_table_reads_every_style_and_the_paired_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = _tables()
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    styles = ["caption", "texting"]

    def iv(mean: float) -> dict[str, float]:
        return {"mean": mean, "low": mean - 1, "high": mean + 1}

    summary = {
        setting: {
            scoring: {
                "R@10": {s: iv(10 * (i + 1) + j) for j, s in enumerate(styles)},
                "kept": iv(0.5 + i / 10),
            }
            for scoring in ("global", "reranked")
        }
        for i, setting in enumerate(("held-out", "all-styles"))
    }
    summary["trained - held out"] = {
        scoring: {"texting R@10": iv(4.5), "other styles R@10": iv(-0.5)}
        for scoring in ("global", "reranked")
    }
    data = {"recipe": "planet-l0.25", "backbone": "minilm-cnn", "steps": 500, "seeds": [0, 1]}
    data |= {"held_out_style": "texting", "summary": summary}
    (tmp_path / "style_ceiling.json").write_text(json.dumps(data))
    text = tables.render("style_ceiling")
    assert (
        "| `texting` trained too, global embedding | 20.0 [19.0, 21.0] | 21.0 [20.0, 22.0] |"
        in (text)
    )
    assert "| 0.60 [-0.40, 1.60] |" in text  # the share kept, with its interval
    assert "| global embedding | 4.5 [3.5, 5.5] | -0.5 [-1.5, 0.5] |" in text
    del data["summary"]
    (tmp_path / "style_ceiling.json").write_text(json.dumps(data))
    assert "holds no summary yet" in tables.render("style_ceiling")


def test_style_robustness_chooses_on_val_and_renders_every_arm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import style_robustness as bench

    tables = _tables()
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    rng = np.random.default_rng(0)

    def ranks(hit_rate: float) -> dict[str, list[int]]:
        hits = rng.random(200) < hit_rate
        return {"ranks": np.where(hits, 3, 50).tolist()}

    def run(val_chatty: float, test_texting: float) -> dict:
        scorings = ("global", "reranked")
        val = {f"{s}-{sc}": ranks(0.4) for s in bench.TRAINED for sc in scorings}
        val |= {f"chatty-{sc}": ranks(val_chatty) for sc in scorings}
        test = {f"{s}-{sc}": ranks(0.4) for s in bench.STYLES for sc in scorings}
        test |= {f"texting-{sc}": ranks(test_texting) for sc in scorings}
        return {"val": val, "test": test}

    # The informal arm wins on val and loses on test: val alone decides.
    runs = {
        "base": {str(s): run(0.1, 0.35) for s in (0, 1)},
        "informal": {str(s): run(0.3, 0.1) for s in (0, 1)},
    }
    summary = bench.summarise(runs, [0, 1])
    assert summary["selection"]["arm"] == "informal"
    test = summary["test"]
    assert test["base"]["global"]["kept"]["texting"]["mean"] > 0.7
    assert test["informal"]["global"]["kept"]["texting"]["mean"] < 0.4
    assert summary["informal - base (test)"]["global"]["texting"]["mean"] < -15
    data = {
        "recipe": "planet-l0.25+paraphrase",
        "backbone": "minilm-cnn",
        "steps": 500,
        "seeds": [0, 1],
        "held_out_style": "texting",
        "val_style": "chatty",
        "trained_styles": bench.TRAINED,
        "arms": bench.ARMS,
        "summary": summary,
    }
    (tmp_path / "style_robustness.json").write_text(json.dumps(data))
    text = tables.render("style_robustness")
    assert "| informal (arm chosen on val), global embedding |" in text
    assert "Arm chosen on val (" in text and "**informal**" in text
    assert "| base, re-ranked (alpha from val) |" in text
    del data["summary"]
    (tmp_path / "style_robustness.json").write_text(json.dumps(data))
    assert "holds no summary yet" in tables.render("style_robustness")


def test_the_rewrite_rules_hash_ignores_docstrings_and_comments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs are reused only under the same rewrite rules: rewording the rules' documentation
    keeps them, changing a rule does not."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import style_robustness as bench

    def digest(source: str) -> str:
        path = tmp_path / "rules.py"
        path.write_text(source)
        return bench.code_hash(path)

    base = digest('"""Rules."""\n\ndef f(x):\n    """Doc."""\n    return x + 1\n')
    assert base == digest('"""Other words."""\n# a comment\n\ndef f(x):\n    return x + 1\n')
    assert base != digest('"""Rules."""\n\ndef f(x):\n    """Doc."""\n    return x + 2\n')
    with_class = 'class C:\n    """Doc."""\n\n    def g(self):\n        """Only a docstring."""\n'
    assert digest(with_class) == digest("class C:\n    def g(self):\n        pass\n")


def test_eval_scale_renders_an_encoding_spread_over_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = _tables()
    data = json.loads((ROOT / "benchmarks" / "results" / "eval_scale.json").read_text())
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    data["phases"]["index"] |= {"runs": 2, "tiles_per_s": 150.0}
    (tmp_path / "eval_scale.json").write_text(json.dumps(data))
    text = tables.render("eval_scale")
    assert "at 150.0 tiles/s (CPU, model and signatures; over 2 runs, a stopped" in text
    data["phases"]["index"]["tiles_per_s"] = None  # the runs do not add up to the whole
    (tmp_path / "eval_scale.json").write_text(json.dumps(data))
    assert "(no rate: the recorded runs do not add up" in tables.render("eval_scale")
    data["phases"]["index"]["runs"] = 0  # a store finished before runs were recorded
    (tmp_path / "eval_scale.json").write_text(json.dumps(data))
    assert "tiles in a store finished before encoding runs" in tables.render("eval_scale")


def test_the_million_tile_run_renders_from_its_own_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = _tables()
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    assert "eval_scale.py --out benchmarks/results/eval_scale_xl.json" in tables.render(
        "eval_scale_xl"
    )
    data = json.loads((ROOT / "benchmarks" / "results" / "eval_scale.json").read_text())
    data["summary"]["queries_world"] = 9876
    (tmp_path / "eval_scale_xl.json").write_text(json.dumps(data))
    text = tables.render("eval_scale_xl")
    assert "9,876 world queries" in text
    assert text.endswith("*From `benchmarks/results/eval_scale_xl.json`.*\n")
