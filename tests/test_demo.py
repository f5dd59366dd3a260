"""The demo workflow end to end on a small world and a tiny model: every promised file, both
methods on the same budget, the examples answered, and a second run that retrains nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import SMALL_WORLD, TINY_MODEL
from planetloc.data.manifest import Manifest
from planetloc.workflows import demo


def test_demo_writes_every_report_and_reuses_its_runs(
    small_world: Manifest, tmp_path: Path
) -> None:
    # The session's world, finished: the demo must take it as its own rather than redo it.
    shutil.copytree(small_world.path.parent, tmp_path / "world")
    said: list[str] = []
    settings = {**TINY_MODEL, "batch_size": 16, "eval_every": 0, "workers": 0}
    reports = demo.run_demo(
        tmp_path,
        steps=3,
        amp="off",
        world=SMALL_WORLD,
        settings=settings,
        say=said.append,
        progress=False,
    )
    assert set(reports) == {"planet", "itc-long"}
    for method, report in reports.items():
        assert report["model"]["method"] == method
        assert report["model"]["backbone"] == "tiny-bert-cnn"
        assert report["sets"]["world"]["full"]["queries"] > 0
        for suffix in (".json", ".md", "_recall.png", "_errors.png"):
            assert (tmp_path / f"{method}{suffix}").stat().st_size > 0, suffix
        saved = json.loads((tmp_path / f"{method}.json").read_text())
        assert saved["sets"] == json.loads(json.dumps(report["sets"]))
    both = json.loads((tmp_path / "comparison.json").read_text())
    assert set(both) == {"planet", "itc-long"}
    assert (tmp_path / "baseline.json").is_file()
    assert (tmp_path / "comparison_recall.png").read_bytes()[:4] == b"\x89PNG"
    text = "\n".join(said)
    assert "3 steps, same data and budget, float32" in text
    assert text.count("true location:") == 3
    # A second run finds both checkpoints finished and trains nothing.
    stamps = {m: (tmp_path / m / "checkpoint.safetensors").stat().st_mtime_ns for m in reports}
    again = demo.run_demo(
        tmp_path,
        steps=3,
        amp="off",
        world=SMALL_WORLD,
        settings=settings,
        say=lambda _: None,
        progress=False,
    )
    assert {m: (tmp_path / m / "checkpoint.safetensors").stat().st_mtime_ns for m in again} == (
        stamps
    )
    assert again["planet"]["sets"] == reports["planet"]["sets"]


@pytest.mark.parametrize(
    ("cuda", "native", "expected"),
    [(False, True, "bf16"), (False, False, "off"), (True, False, "bf16")],
)
def test_demo_uses_bf16_only_where_the_hardware_does_it_natively(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, native: bool, expected: str
) -> None:
    monkeypatch.setattr(demo.torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(demo, "cpu_has_native_bf16", lambda: native)
    assert demo.demo_amp("auto") == expected
    assert demo.demo_amp("off") == "off" and demo.demo_amp("bf16") == "bf16"


def test_demo_world_is_the_default_world_without_street_views() -> None:
    from dataclasses import replace

    from planetloc.data.synth.generate import SynthConfig

    world = demo.demo_world(3)
    assert world.street_views is False
    assert replace(world, street_views=True) == SynthConfig(seed=3)
