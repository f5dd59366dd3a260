"""Gallery indexes, geographic priors and ``Locator``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from planetloc.data.manifest import Manifest
from planetloc.errors import PlanetlocError
from planetloc.geo.coords import haversine_m
from planetloc.index.locate import Locator, estimate_location
from planetloc.index.priors import Prior, select
from planetloc.index.store import GalleryIndex, IndexParams, build_index
from planetloc.train.checkpoint import read_checkpoint


def _gallery(world: Manifest) -> list:
    return world.by_split("test", "gallery")


def test_index_holds_every_gallery_tile(tiny_index: Path, small_world: Manifest) -> None:
    index = GalleryIndex.open(tiny_index)
    expected = _gallery(small_world)
    assert index.info["count"] == len(expected) == len(index.ids)
    assert set(index.ids) == {s.id for s in expected}
    assert index.embeddings.dtype == np.float16 and index.embeddings.shape[1] == 32
    assert index.info["params"]["kind"] == "flat"
    norms = np.linalg.norm(np.asarray(index.embeddings, dtype=np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=2e-3)
    assert set(index.phys) == {"color", "struc", "tex"}


def test_killed_build_resumes_without_reencoding_finished_shards(
    tiny_index: Path, tiny_checkpoint: Path, small_world: Manifest, tmp_path: Path
) -> None:
    out = tmp_path / "idx"
    shutil.copytree(tiny_index, out)
    shards = sorted((out / "shards").glob("*.npz"))
    assert len(shards) > 2
    # A kill during shard 2: later shards and every merged file are missing.
    for path in shards[2:]:
        path.unlink()
    for name in ("index.json", "faiss.index", "embeddings.npy", "meta.parquet"):
        (out / name).unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in shards[:2]}
    build_index(
        tiny_checkpoint,
        small_world.path,
        out,
        splits=("test", "gallery"),
        shard_size=64,
        progress=False,
    )
    assert {p.name: p.stat().st_mtime_ns for p in shards[:2]} == kept
    a, b = GalleryIndex.open(tiny_index), GalleryIndex.open(out)
    assert np.array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))
    with pytest.raises(PlanetlocError, match="another model or gallery"):
        build_index(
            tiny_checkpoint, small_world.path, out, splits=("test",), shard_size=64, progress=False
        )


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_approximate_kinds_find_the_exact_neighbours(
    kind: str, tiny_index: Path, tiny_checkpoint: Path, small_world: Manifest, tmp_path: Path
) -> None:
    out = build_index(
        tiny_checkpoint,
        small_world.path,
        tmp_path / kind,
        params=IndexParams(kind=kind, dtype="float32"),
        splits=("test", "gallery"),
        shard_size=64,
        progress=False,
    )
    approx, exact = GalleryIndex.open(out), GalleryIndex.open(tiny_index)
    assert approx.info["params"]["kind"] == kind
    if kind == "ivfpq":
        assert approx.info["params"]["nlist"] >= 1 and approx.info["params"]["pq_m"] == 8
        assert approx.info["params"]["refine"] == 8
    queries = np.asarray(exact.embeddings[:40], dtype=np.float32)
    _, got = approx.search(queries, 10)
    _, want = exact.search(queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.95, recall
    # Large allowed sets go through FAISS's id selector: only allowed ids may come back.
    allowed = np.arange(0, approx.info["count"], 3)
    for idx in (approx, exact):
        _, ids = idx.search(queries[:5], 5, allowed, exact_limit=0)
        assert set(ids[ids >= 0].tolist()) <= set(allowed.tolist()) and (ids >= 0).sum() > 0


def test_priors_select_exactly_what_they_say(tiny_index: Path) -> None:
    idx = GalleryIndex.open(tiny_index)
    lat, lon, region = idx.lat, idx.lon, idx.region
    r0 = str(region[0])
    assert set(region[select(Prior(regions=(r0.upper(),)), lat, lon, region)]) == {r0}
    point = (float(lat[0]), float(lon[0]))
    within = select(Prior(near=point, radius_km=0.3), lat, lon, region)
    dist = haversine_m(point[0], point[1], lat, lon)
    assert set(within) == set(np.flatnonzero(dist <= 300))
    nearest = select(Prior(near=point, nearest=7), lat, lon, region)
    assert set(nearest) == set(np.argsort(dist)[:7])
    bbox = (point[1] - 0.002, point[0] - 0.002, point[1] + 0.002, point[0] + 0.002)
    inside = select(Prior(bbox=bbox), lat, lon, region)
    assert 0 in inside and np.all((lat[inside] >= bbox[1]) & (lon[inside] <= bbox[2]))
    assert select(None, lat, lon, region) is None
    with pytest.raises(PlanetlocError, match="needs a point"):
        Prior(radius_km=3)
    with pytest.raises(PlanetlocError, match="radius must be positive"):
        Prior(near=(0, 0), radius_km=-1)
    with pytest.raises(PlanetlocError, match="not a valid lat,lon"):
        Prior(near=(95, 0))


def test_locate_ranks_by_exact_score_and_respects_priors(
    tiny_index: Path, small_world: Manifest
) -> None:
    locator = Locator.open(tiny_index)
    query = small_world.by_split("test")[0]
    result = locator.locate(query.text, k=8)
    scores = [t.score for t in result.tiles]
    assert len(result.tiles) == 8 and scores == sorted(scores, reverse=True)
    q, _ = locator._encode([query.text])
    position = {str(i): n for n, i in enumerate(locator.index.ids)}
    emb = np.asarray(locator.index.embeddings, dtype=np.float32)
    best = int(np.argmax(emb @ q[0]))
    assert result.tiles[0].id == str(locator.index.ids[best])
    assert all(set(t.physics) == {"color", "struc", "tex"} for t in result.tiles)
    assert result.estimate is not None and result.estimate.radius_m >= 136
    regional = locator.locate(query.text, k=5, prior=Prior(regions=(query.region,)))
    assert {t.region for t in regional.tiles} == {query.region}
    near = locator.locate(query.text, k=5, prior=Prior(near=(query.lat, query.lon), nearest=5))
    assert query.id in {t.id for t in near.tiles}
    assert [position[t.id] for t in near.tiles]  # ids are real gallery ids
    batch = locator.locate_batch([query.text, "I see a river."], k=3)
    assert [len(r.tiles) for r in batch] == [3, 3] and batch[0].tiles[0].id == result.tiles[0].id
    empty = locator.locate(query.text, k=5, prior=Prior(bbox=(0.0, 0.0, 0.001, 0.001)))
    assert empty.tiles == [] and empty.estimate is None


@pytest.mark.parametrize(
    ("text", "k", "message"),
    [
        ("", 5, "the description is empty"),
        ("   ", 5, "the description is empty"),
        ("x" * 5000, 5, "5000 characters; the limit is 4000"),
        (42, 5, "must be text, got int"),
        ("I see trees.", 0, "k must be between 1 and 100"),
        ("I see trees.", 101, "k must be between 1 and 100"),
    ],
)
def test_locate_rejects_bad_input(tiny_index: Path, text: object, k: int, message: str) -> None:
    locator = Locator.open(tiny_index)
    with pytest.raises(PlanetlocError, match=message):
        locator.locate(text, k=k)  # type: ignore[arg-type]


def test_index_refuses_another_model(
    tiny_index: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    import torch

    payload = read_checkpoint(tiny_checkpoint)
    key = next(k for k in payload["model"] if k.startswith("image_proj"))
    payload["model"][key] = payload["model"][key] + 1.0
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(PlanetlocError, match="built by another model"):
        Locator.open(tiny_index, checkpoint=tmp_path / "other.pt")
    info = json.loads((tiny_index / "index.json").read_text())
    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    info["embed_dim"] = 64
    (copy / "index.json").write_text(json.dumps(info))
    with pytest.raises(PlanetlocError, match=r"do not match index\.json"):
        GalleryIndex.open(copy)
    with pytest.raises(PlanetlocError, match="not a finished index"):
        GalleryIndex.open(tmp_path)


def test_estimate_follows_a_clear_winner_and_widens_on_ties() -> None:
    lat = np.array([10.0, 10.01, 10.02])
    lon = np.array([20.0, 20.0, 20.0])
    clear = estimate_location(lat, lon, np.array([0.9, 0.3, 0.2]), scale=50.0)
    assert haversine_m(clear.lat, clear.lon, 10.0, 20.0) < 5 and clear.radius_m == pytest.approx(
        136, rel=0.05
    )
    tie = estimate_location(lat, lon, np.array([0.5, 0.5, 0.5]), scale=50.0)
    assert haversine_m(tie.lat, tie.lon, 10.01, 20.0) < 5
    assert 1500 < tie.radius_m < 2500  # 2 x RMS spread of three tiles 1.1 km apart
    # A rival on another continent scoring as well as the best halves the cluster's share.
    far = estimate_location(
        np.array([10.0, -30.0]), np.array([20.0, 150.0]), np.array([0.5, 0.5]), scale=50.0
    )
    assert haversine_m(far.lat, far.lon, 10.0, 20.0) < 1 and far.radius_m == pytest.approx(
        272, rel=0.05
    )
    lonely = estimate_location(
        np.array([10.0, -30.0]), np.array([20.0, 150.0]), np.array([0.5, 0.2]), scale=50.0
    )
    assert lonely.radius_m == pytest.approx(136, rel=0.01)


def test_flat_search_gives_the_same_answer_for_any_batch_size() -> None:
    import faiss

    from planetloc.index.store import SMALL_BATCH, flat_search

    rng = np.random.default_rng(0)
    xb = rng.standard_normal((500, 16), dtype=np.float32)
    index = faiss.IndexFlatIP(16)
    index.add(xb)
    queries = rng.standard_normal((SMALL_BATCH + 5, 16), dtype=np.float32)
    small_d, small_i = flat_search(index, queries[:3], 7)
    big_d, big_i = flat_search(index, queries, 7)
    assert np.array_equal(small_i, big_i[:3])
    assert np.allclose(small_d, big_d[:3], atol=1e-4)
    assert np.array_equal(small_i[:, 0], np.argmax(queries[:3] @ xb.T, axis=1))
