"""The planetloc command line: help everywhere, clear one-line errors, real jobs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from planetloc.cli import main
from planetloc.data.manifest import Manifest

SUBCOMMANDS = [
    [],
    ["synth"],
    ["validate"],
    ["import"],
    ["import", "cvgtext"],
    ["import", "table"],
    ["regions"],
    ["baseline"],
    ["demo"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS)
def test_every_subcommand_has_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*words, "--help"])
    assert info.value.code == 0
    assert "usage: planetloc" in capsys.readouterr().out


def test_console_script_is_installed() -> None:
    exe = shutil.which("planetloc") or str(Path(sys.executable).parent / "planetloc")
    done = subprocess.run(
        [exe, "regions", "--continent", "Oceania"], capture_output=True, text=True, check=True
    )
    assert len(done.stdout.strip().splitlines()) == 20 and "sydney-au" in done.stdout


def test_synth_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    args = ["synth", "--out", str(out), "--regions", "2", "--per-region", "6", "--distractors", "2"]
    assert main([*args, "--size", "64", "--format", "parquet", "--seed", "5"]) == 0
    assert (out / "manifest.parquet").is_file()
    assert main(["validate", str(out / "manifest.parquet")]) == 0
    assert "ok: 16 valid samples" in capsys.readouterr().out


def test_bad_manifest_gives_one_line_error_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "m.jsonl"
    row = {"id": "a", "text": "t", "sat_path": "x.png", "lat": 95, "lon": 0}
    row |= {"region": "r", "continent": "Asia", "split": "test"}
    bad.write_text(json.dumps(row) + "\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"planetloc: error: {bad}: line 1 (id='a'): field 'lat' = 95 is outside [-90, 90]"
    assert main(["synth", "--out", str(tmp_path / "w"), "--size", "8"]) == 2
    assert "--size must be between 16 and 1024" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "none.jsonl")]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_baseline_command_writes_json_markdown_and_png(
    small_world: Manifest, tmp_path: Path
) -> None:
    assert main(["baseline", "--data", str(small_world.root), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "baseline.json").read_text())
    assert set(report) == {"method", "train_samples", "sets", "examples"}
    assert set(report["sets"]["world"]) == {"queries", "gallery", "chance", "baseline"}
    assert (tmp_path / "baseline.md").read_text().startswith("| set |")
    assert (tmp_path / "baseline_examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
