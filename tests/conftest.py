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


# A model small enough to train in seconds, shared by the training, index and service tests.
TINY_MODEL = {
    "model.backbone": "tiny-bert-cnn",
    "model.embed_dim": 32,
    "model.head_dim": 32,
    "model.phys_dim": 16,
    "model.heads": 2,
    "model.image_size": 64,
}
TINY_TRAIN = {**TINY_MODEL, "batch_size": 16, "steps": 3, "eval_every": 0, "workers": 0}


@pytest.fixture(scope="session")
def tiny_checkpoint(small_world: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from planetloc.train.config import load_config
    from planetloc.train.trainer import train

    out = tmp_path_factory.mktemp("tiny-run")
    train(
        load_config(
            method="planet",
            overrides={"data": str(small_world.path), "out": str(out), **TINY_TRAIN},
        ),
        progress=False,
    )
    return out / "checkpoint.safetensors"


@pytest.fixture(scope="session")
def tiny_index(
    small_world: Manifest, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from planetloc.workflows.indexing import build_gallery_index

    out = tmp_path_factory.mktemp("index")
    build_gallery_index(
        checkpoint=str(tiny_checkpoint),
        gallery=str(small_world.path),
        out=out,
        splits=("test", "gallery"),
        shard_size=64,
        tile_size_m=192.0,
        progress=False,
    )
    return out
