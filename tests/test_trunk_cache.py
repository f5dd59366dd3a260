"""The on-disk frozen-trunk cache: content-addressed, keyed by the trunk, read by the Encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from planetloc.errors import PlanetlocError
from planetloc.model.inference import Encoder
from planetloc.model.planet import ModelConfig, Planet
from planetloc.model.trunk_cache import TrunkCache

TEXTS = [
    "I stand at a wide crossing with tall grey towers to my left.",
    "A quiet lane, red roofs behind me and a river ahead.",
    "short",
    " ".join(["a long walk past many low houses"] * 20),  # cut at max_tokens
]


def _model(seed: int = 0, max_tokens: int = 32) -> Planet:
    torch.manual_seed(seed)
    return Planet(
        ModelConfig(
            backbone="tiny-bert-cnn",
            embed_dim=16,
            head_dim=16,
            phys_dim=8,
            heads=2,
            max_tokens=max_tokens,
        )
    ).eval()


def test_cached_encoding_matches_the_trunk_and_keeps_the_cut_flags(tmp_path: Path) -> None:
    model = _model()
    cache = TrunkCache.build(tmp_path, model, TEXTS)
    direct = Encoder(model).encode_texts(TEXTS)
    cached = Encoder(model, trunk_cache=cache).encode_texts(TEXTS)
    # A frozen trunk's token features are float16 either way; only padding differs.
    np.testing.assert_allclose(cached.global_, direct.global_, atol=1e-4)
    for branch in direct.phys:
        np.testing.assert_allclose(cached.phys[branch], direct.phys[branch], atol=1e-4)
    assert direct.truncated.tolist() == [False, False, False, True]
    assert cached.truncated.tolist() == direct.truncated.tolist()


def test_the_encoder_reads_the_cache_rather_than_the_trunk(tmp_path: Path) -> None:
    model = _model()
    cache = TrunkCache.build(tmp_path, model, TEXTS)
    before = Encoder(model, trunk_cache=cache).encode_texts(TEXTS[:2]).global_
    # Change the trunk's weights behind the cache's back: cached texts must not notice.
    with torch.no_grad():
        for p in model.text_tower.parameters():
            p.add_(torch.randn_like(p))
    after = Encoder(model, trunk_cache=cache).encode_texts(TEXTS[:2]).global_
    np.testing.assert_array_equal(after, before)
    # A batch holding an uncached text goes through the (changed) trunk instead.
    mixed = Encoder(model, trunk_cache=cache).encode_texts([TEXTS[0], "never cached"]).global_
    assert not np.allclose(mixed[0], before[0], atol=1e-3)


def test_cache_lookup_and_refusal(tmp_path: Path) -> None:
    model = _model()
    cache = TrunkCache.build(tmp_path, model, TEXTS)
    assert cache.covers(TEXTS) and cache.covers([])
    assert not cache.covers([TEXTS[0], "never cached"])
    with pytest.raises(PlanetlocError, match="1 texts of the batch are not cached"):
        cache.batch([TEXTS[1], "never cached"])


def test_a_subset_reuses_the_cache_and_another_trunk_gets_its_own(tmp_path: Path) -> None:
    model = _model()
    full = TrunkCache.build(tmp_path, model, TEXTS)
    assert TrunkCache.build(tmp_path, model, TEXTS[:2]).folder == full.folder
    other = TrunkCache.build(tmp_path, _model(seed=1), TEXTS[:2])
    assert other.folder != full.folder
    longer = TrunkCache.build(tmp_path, _model(max_tokens=64), TEXTS[:2])
    assert longer.folder not in (full.folder, other.folder)
    assert len(list(tmp_path.glob("trunk-*"))) == 3


def test_bf16_features_are_cached_apart_from_float32_ones(tmp_path: Path) -> None:
    model = _model()
    fp32 = TrunkCache.build(tmp_path, model, TEXTS)
    bf16 = TrunkCache.build(tmp_path, model, TEXTS, amp=True)
    assert bf16.folder != fp32.folder
    a, b = fp32.batch(TEXTS[:2]).tokens.float(), bf16.batch(TEXTS[:2]).tokens.float()
    assert not torch.equal(a, b)  # computed in another arithmetic...
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=0.1)  # ...of the same trunk


def test_evaluation_caches_query_features_for_every_model_with_that_trunk(
    small_world, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from planetloc.workflows.evaluation import run_evaluation

    data = str(small_world.path)
    plain = run_evaluation(
        data,
        str(tmp_path / "a"),
        checkpoint=str(tiny_checkpoint),
        text_cache="off",
        progress=False,
    )
    cache = tmp_path / "cache"
    first = run_evaluation(
        data,
        str(tmp_path / "b"),
        checkpoint=str(tiny_checkpoint),
        text_cache=str(cache),
        progress=False,
    )
    assert len(list(cache.glob("trunk-*"))) == 1
    assert first["sets"] == plain["sets"]  # same numbers with and without the cache

    def no_trunk(*args, **kwargs):
        raise AssertionError("the trunk ran although its features were cached")

    monkeypatch.setattr(Planet, "text_trunk", no_trunk)
    again = run_evaluation(
        data,
        str(tmp_path / "c"),
        checkpoint=str(tiny_checkpoint),
        text_cache=str(cache),
        progress=False,
    )
    assert again["sets"] == first["sets"]


def test_auto_keeps_no_cache_in_a_folder_it_cannot_write(
    small_world, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from planetloc.data import caches

    home = small_world.path.parent
    assert caches.cache_root(small_world.path, "off") is None
    assert caches.cache_root(small_world.path, str(tmp_path / "x")) == tmp_path / "x"
    assert caches.cache_root(small_world.path, "auto") == home / caches.CACHE_FOLDER
    # As a user without write access to the dataset's folder (modes do not bind root, so
    # the permission answer is given here rather than by chmod).
    real = os.access
    monkeypatch.setattr(
        caches.os,
        "access",
        lambda p, mode: False if Path(p) in (home, home / caches.CACHE_FOLDER) else real(p, mode),
    )
    assert caches.cache_root(small_world.path, "auto") is None
