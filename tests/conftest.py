"""Shared fixtures: a small SynthCORE world generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from planetloc.data.manifest import Manifest, read_manifest
from planetloc.data.synth.generate import SynthConfig, generate_world

SMALL_WORLD = SynthConfig(regions=8, per_region=50, distractors=10, seed=7)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("world")
    return read_manifest(generate_world(SMALL_WORLD, out, workers=2))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the shared fixtures are not available on this machine")
    return path
