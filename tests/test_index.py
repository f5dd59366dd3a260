"""Gallery indexes (content-keyed shards, FAISS factory strings, one search contract),
geographic priors, estimates and ``Locator``."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from planetloc.data.manifest import Manifest, write_manifest
from planetloc.errors import PlanetlocError
from planetloc.geo.coords import haversine_m, offset_latlon
from planetloc.index.estimate import estimate_location
from planetloc.index.locate import Locator, Query
from planetloc.index.priors import Prior, select
from planetloc.index.store import GalleryIndex
from planetloc.workflows.indexing import build_gallery_index


def _build(checkpoint: Path, gallery: Path, out: Path, **kw) -> dict:
    return build_gallery_index(
        checkpoint=str(checkpoint),
        gallery=str(gallery),
        out=out,
        splits=kw.pop("splits", ("test", "gallery")),
        shard_size=kw.pop("shard_size", 64),
        tile_size_m=kw.pop("tile_size_m", 192.0),
        progress=False,
        **kw,
    )


def test_index_holds_every_gallery_tile(tiny_index: Path, small_world: Manifest) -> None:
    index = GalleryIndex.open(tiny_index)
    expected = small_world.by_split("test", "gallery")
    assert index.info["count"] == len(expected) == len(index.ids)
    assert list(index.ids) == [s.id for s in expected]  # rows follow the manifest
    assert index.embeddings.dtype == np.float16 and index.embeddings.shape[1] == 32
    assert index.info["search"]["factory"] == "Flat" and index.tile_size_m == 192.0
    norms = np.linalg.norm(np.asarray(index.embeddings, dtype=np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=2e-3)
    assert set(index.phys) == {"color", "struc", "tex"}


def test_rebuild_reencodes_exactly_the_shards_whose_inputs_changed(
    tiny_index: Path, tiny_checkpoint: Path, small_world: Manifest, tmp_path: Path
) -> None:
    out = tmp_path / "idx"
    shutil.copytree(tiny_index, out)
    shards = sorted((out / "shards").glob("*.npz"))
    stamps = {p.name: p.stat().st_mtime_ns for p in shards}
    # Same path and tile count, but two tiles of the last shard swap images: a stale index
    # would pair them with each other's embeddings.
    samples = [copy.deepcopy(s) for s in small_world.samples]  # the shared world stays as it is
    gallery = [s for s in samples if s.split in ("test", "gallery")]
    a, b = gallery[-1], gallery[-2]
    a.sat_path, b.sat_path = b.sat_path, a.sat_path
    for s in samples:
        s.sat_path = str(small_world.resolve(s.sat_path))
    changed = write_manifest(samples, tmp_path / "changed.jsonl")
    info = _build(tiny_checkpoint, changed, out)
    assert info["shards"]["reused"] == len(shards) - 1
    after = {p.name: p.stat().st_mtime_ns for p in sorted((out / "shards").glob("*.npz"))}
    assert [n for n in stamps if stamps[n] != after[n]] == [shards[-1].name]
    old, new = GalleryIndex.open(tiny_index), GalleryIndex.open(out)
    assert np.array_equal(np.asarray(old.embeddings[-1]), np.asarray(new.embeddings[-2]))
    assert np.array_equal(np.asarray(old.embeddings[-2]), np.asarray(new.embeddings[-1]))
    # Another model re-encodes everything.
    from planetloc.model.checkpoint import read_checkpoint

    assert read_checkpoint(tiny_checkpoint).fingerprint == new.info["model_fingerprint"]


def test_rebuild_trusts_unchanged_file_stamps_and_reads_changed_files(
    tiny_index: Path,
    tiny_checkpoint: Path,
    small_world: Manifest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from planetloc.index import store

    out = tmp_path / "idx"
    shutil.copytree(tiny_index, out)
    n_shards = len(list((out / "shards").glob("*.npz")))
    # The last gallery tile is read from a copy, so that the test can edit it.
    samples = [copy.deepcopy(s) for s in small_world.samples]
    for s in samples:
        s.sat_path = str(small_world.resolve(s.sat_path))
    last = [s for s in samples if s.split in ("test", "gallery")][-1]
    copy_path = tmp_path / "tile.png"
    copy_path.write_bytes(Path(last.sat_path).read_bytes())
    last.sat_path = str(copy_path)
    gallery = write_manifest(samples, tmp_path / "gallery.jsonl")

    reads: list[str] = []
    real_read = store.read_image_bytes

    def counting_read(path: object) -> bytes:
        reads.append(str(path))
        return real_read(path)

    monkeypatch.setattr(store, "read_image_bytes", counting_read)
    # Just written: too recent to trust by its time stamp, so its shard is read by content.
    info = _build(tiny_checkpoint, gallery, out)
    assert info["shards"]["reused"] == n_shards and str(copy_path) in reads
    # A file older than the racy window is trusted by its stamp from now on.
    monkeypatch.setattr(store, "RACY_SECONDS", 0.0)
    _build(tiny_checkpoint, gallery, out)
    reads.clear()
    info = _build(tiny_checkpoint, gallery, out)
    assert info["shards"]["reused_by_stat"] == n_shards and reads == []
    # Edited (another tile's bytes, a later stamp): only its shard is read and re-encoded.
    before = GalleryIndex.open(out)
    first = next(s for s in samples if s.split in ("test", "gallery"))
    stamp = copy_path.stat().st_mtime_ns - 10_000_000_000  # differs from the stored stamp
    copy_path.write_bytes(Path(first.sat_path).read_bytes())
    os.utime(copy_path, ns=(stamp, stamp))
    info = _build(tiny_checkpoint, gallery, out)
    assert info["shards"]["reused"] == n_shards - 1
    assert info["shards"]["reused_by_stat"] == n_shards - 1
    # Hashed, then decoded: the files of one shard only (64 tiles at most).
    assert str(copy_path) in reads and len(set(reads)) <= 64
    after = GalleryIndex.open(out)
    new, old = (np.asarray(e, dtype=np.float32) for e in (after.embeddings, before.embeddings))
    assert np.allclose(new[-1], new[0], atol=1e-2)  # the tile now holds the first one's image
    assert not np.allclose(new[-1], old[-1], atol=1e-2)


@pytest.mark.parametrize(("kind", "factory"), [("hnsw", "HNSW32,Flat"), ("ivfpq", "IVF")])
def test_approximate_kinds_return_exact_scores_and_find_the_neighbours(
    kind: str,
    factory: str,
    tiny_index: Path,
    tiny_checkpoint: Path,
    small_world: Manifest,
    tmp_path: Path,
) -> None:
    out = tmp_path / kind
    info = _build(tiny_checkpoint, small_world.path, out, kind=kind, dtype="float32")
    assert info["search"]["factory"].startswith(factory)
    approx, exact = GalleryIndex.open(out), GalleryIndex.open(tiny_index)
    queries = np.asarray(exact.embeddings[:40], dtype=np.float32)
    rows, scores = approx.search(queries, 10)
    want, _ = exact.search(queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(rows, want, strict=True)])
    assert recall >= 0.95, recall
    # Scores are exact float64 cosines with the stored vectors, best first.
    stored = np.asarray(approx.embeddings, dtype=np.float64)
    for q, r, s in zip(queries, rows, scores, strict=True):
        assert np.allclose(s, stored[r] @ q.astype(np.float64), atol=1e-12)
        assert np.all(np.diff(s) <= 0)
    # Allowed sets: only allowed rows come back, for any size of set.
    for allowed in (np.arange(0, len(approx), 3), np.arange(5)):
        got, _ = approx.search(queries[:5], 5, allowed)
        assert set(got[got >= 0].tolist()) <= set(allowed.tolist()) and (got >= 0).any()
    locator = Locator.open(out)
    text = small_world.by_split("test")[0].text
    result = locator.locate(Query(text=text, k=5))
    assert len(result.tiles) == 5 and result.estimate is not None


def test_flat_search_gives_the_same_answer_for_any_batch_size(tiny_index: Path) -> None:
    index = GalleryIndex.open(tiny_index)
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((64, 32)).astype(np.float32)
    small_rows, small_scores = index.search(queries[:3], 7)
    big_rows, big_scores = index.search(queries, 7)
    assert np.array_equal(small_rows, big_rows[:3])
    assert np.allclose(small_scores, big_scores[:3], atol=1e-12)
    stored = np.asarray(index.embeddings, dtype=np.float64)
    assert np.array_equal(small_rows[:, 0], np.argmax(queries[:3].astype(np.float64) @ stored.T, 1))


class _Gallery:
    """A flat gallery held in memory, as the search contract sees an opened index."""

    def __init__(self, vectors: np.ndarray) -> None:
        from planetloc.index.search import SearchParams, make_faiss

        self.embeddings = vectors
        self.faiss_index, self.search_params = make_faiss(vectors, SearchParams(kind="flat"))

    def __len__(self) -> int:
        return len(self.embeddings)


def test_exact_search_separates_what_float32_cannot_and_breaks_true_ties_by_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from planetloc.index import search as search_mod

    rng = np.random.default_rng(3)
    d = 64
    base = rng.standard_normal((3000, d))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    query = base[0].copy()
    # Rows whose exact scores differ below float32's resolution near the top, and exact
    # duplicates (true ties) placed late, so the tie rule has something to decide.
    for i, row in enumerate((2900, 17, 1500, 42)):
        v = query.copy()
        v[i + 1] += 1e-7 * (i + 1)  # scores 1 + O(1e-7 * q[i+1]): one float32 ulp or less
        base[row] = v
    base[2999] = base[1]
    base[5] = base[1]
    vectors = base.astype(np.float32)  # the stored (and exact) values
    gallery = _Gallery(vectors)
    exact = vectors.astype(np.float64) @ vectors[[0, 1]].astype(np.float64).T
    want = np.lexsort((np.tile(np.arange(3000), (2, 1)), -exact.T))[:, :12]
    for q_rows in ([0], [0, 1]):
        rows, scores = search_mod.search(gallery, vectors[q_rows], 12)
        assert rows.tolist() == want[: len(q_rows)].tolist()
        assert np.allclose(scores, np.take_along_axis(exact.T[: len(q_rows)], rows, 1), 0, 1e-12)
    # The same answer from the allowed-subset path, and with blocks far smaller than the data.
    allowed = np.arange(0, 3000)
    assert search_mod.search(gallery, vectors[[0]], 12, allowed)[0].tolist() == want[:1].tolist()
    monkeypatch.setattr(search_mod, "BLOCK_BYTES", 4 * d * 100)
    assert search_mod.search(gallery, vectors[[0, 1]], 12)[0].tolist() == want.tolist()
    # A large batch takes the same exact path (no float32 cut at the k-th place).
    many = search_mod.search(gallery, vectors[[0, 1] * 20], 12)[0]
    assert many.tolist() == want.tolist() * 20
    # Duplicates of row 1 come back in row order.
    dup = search_mod.search(gallery, vectors[[1]], 3)[0][0].tolist()
    assert dup == [1, 5, 2999]


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
    assert set(nearest) == set(np.lexsort((np.arange(len(dist)), dist))[:7])
    bbox = (point[1] - 0.002, point[0] - 0.002, point[1] + 0.002, point[0] + 0.002)
    inside = select(Prior(bbox=bbox), lat, lon, region)
    assert 0 in inside and np.all((lat[inside] >= bbox[1]) & (lon[inside] <= bbox[2]))
    assert select(None, lat, lon, region) is None
    for kwargs, message in [
        ({"radius_km": 3}, "needs a point"),
        ({"near": (0, 0), "radius_km": -1}, "radius must be positive"),
        ({"near": (0, 0), "radius_km": float("nan")}, "radius_km must be a finite number"),
        ({"near": (95, 0)}, "not a valid lat,lon"),
        ({"near": (float("nan"), 0)}, "prior point must be a finite number"),
        ({"bbox": (0, 0, 1)}, "needs 4 numbers"),
        ({"near": (0, 0), "nearest": 0}, "nearest-m prior"),
        ({"regions": ("x" * 101,)}, "1-100 characters"),
    ]:
        with pytest.raises(PlanetlocError, match=message):
            Prior(**kwargs)


def test_antimeridian_boxes_and_estimates() -> None:
    lat = np.array([0.0, 0.0, 0.0, 0.0])
    lon = np.array([179.999, -179.999, 0.0, 179.0])
    region = np.array(["a", "a", "b", "a"])
    across = select(Prior(bbox=(179.5, -1.0, -179.5, 1.0)), lat, lon, region)
    assert across.tolist() == [0, 1]  # west > east: the box spans the date line
    est = estimate_location(lat[:2], lon[:2], np.array([0.5, 0.5]), 50.0, 192.0)
    # The centre of two tiles either side of the line lies on it, not at longitude 0.
    assert abs(abs(est.lon) - 180.0) < 1e-6 and est.radius_m < 1000


def test_estimate_follows_a_clear_winner_and_widens_on_ties() -> None:
    half = 192.0 * np.sqrt(2) / 2
    lat = np.array([10.0, 10.01, 10.02])
    lon = np.array([20.0, 20.0, 20.0])
    clear = estimate_location(lat, lon, np.array([0.9, 0.3, 0.2]), 50.0, 192.0)
    assert haversine_m(clear.lat, clear.lon, 10.0, 20.0) < 5
    assert clear.radius_m == pytest.approx(half, rel=0.05)
    # The minimum radius is the gallery's own half tile diagonal.
    big = estimate_location(lat, lon, np.array([0.9, 0.3, 0.2]), 50.0, 500.0)
    assert big.radius_m == pytest.approx(500 * np.sqrt(2) / 2, rel=0.05)
    tie = estimate_location(lat, lon, np.array([0.5, 0.5, 0.5]), 50.0, 192.0)
    assert haversine_m(tie.lat, tie.lon, 10.01, 20.0) < 5
    assert 1500 < tie.radius_m < 2500  # 2 x RMS spread of three tiles 1.1 km apart
    far = estimate_location(
        np.array([10.0, -30.0]), np.array([20.0, 150.0]), np.array([0.5, 0.5]), 50.0, 192.0
    )
    assert haversine_m(far.lat, far.lon, 10.0, 20.0) < 1
    assert far.radius_m == pytest.approx(2 * half, rel=0.05)  # a rival halves the share


def test_locate_ranks_by_exact_score_and_respects_priors(
    tiny_index: Path, small_world: Manifest
) -> None:
    locator = Locator.open(tiny_index)
    query = small_world.by_split("test")[0]
    result = locator.locate(Query(text=query.text, k=8))
    scores = [t.score for t in result.tiles]
    assert len(result.tiles) == 8 and scores == sorted(scores, reverse=True)
    emb = locator.encoder.encode_texts([query.text]).global_[0].astype(np.float64)
    stored = np.asarray(locator.index.embeddings, dtype=np.float64)
    best = int(np.argmax(stored @ emb))
    assert result.tiles[0].id == str(locator.index.ids[best])
    assert result.tiles[0].score == pytest.approx(float(stored[best] @ emb), abs=1e-12)
    assert all(set(t.physics) == {"color", "struc", "tex"} for t in result.tiles)
    assert result.estimate is not None and result.estimate.radius_m >= 192 * np.sqrt(2) / 2 - 1
    assert result.truncated is False and result.query == "text"
    regional = locator.locate(Query(text=query.text, k=5, prior=Prior(regions=(query.region,))))
    assert {t.region for t in regional.tiles} == {query.region}
    near = locator.locate(
        Query(text=query.text, k=5, prior=Prior(near=(query.lat, query.lon), nearest=5))
    )
    assert query.id in {t.id for t in near.tiles}
    batch = locator.locate_many([Query(text=query.text, k=3), Query(text="I see a river.", k=3)])
    assert [len(r.tiles) for r in batch] == [3, 3] and batch[0].tiles[0].id == result.tiles[0].id
    empty = locator.locate(Query(text=query.text, k=5, prior=Prior(bbox=(0.0, 0.0, 0.001, 0.001))))
    assert empty.tiles == [] and empty.estimate is None
    long = locator.locate(Query(text="trees and towers " * 200, k=1))
    assert long.truncated is True  # the cut is reported, not thrown away


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (Query(text=""), "the description is empty"),
        (Query(text="   "), "the description is empty"),
        (Query(text="x" * 5000), "5000 characters; the limit is 4000"),
        (Query(text=42), "must be text, got int"),  # type: ignore[arg-type]
        (Query(text="I see trees.", k=0), "k must be an integer between 1 and 100"),
        (Query(text="I see trees.", k=101), "k must be an integer between 1 and 100"),
        (Query(text="a\udcff b"), "not valid text"),
        (Query(), "give a description"),
        (Query(image=b"not an image"), "trained on descriptions only"),
        (Query(text="x", heading_deg=float("nan")), "heading must be a finite number"),
    ],
)
def test_locate_rejects_bad_input(tiny_index: Path, query: Query, message: str) -> None:
    locator = Locator.open(tiny_index)
    with pytest.raises(PlanetlocError, match=message):
        locator.locate(query)


def test_index_refuses_another_model_and_damaged_files(
    tiny_index: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    from planetloc.model.checkpoint import checkpoint_path

    src = checkpoint_path(tiny_checkpoint)
    from safetensors import safe_open

    with safe_open(str(src), "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(src))
    key = next(k for k in tensors if k.startswith("model.image_proj"))
    tensors[key] = tensors[key] + 1.0
    meta["fingerprint"] = "another"
    save_file(tensors, str(tmp_path / "other.safetensors"), metadata=meta)
    with pytest.raises(PlanetlocError, match="built by another model"):
        Locator.open(tiny_index, checkpoint=tmp_path / "other.safetensors")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    info = json.loads((tiny_index / "index.json").read_text())
    (copy / "index.json").write_text(json.dumps({**info, "embed_dim": 64}))
    with pytest.raises(PlanetlocError, match=r"do not match index\.json"):
        GalleryIndex.open(copy)
    (copy / "index.json").write_text("{not json")
    with pytest.raises(PlanetlocError, match="damaged index description"):
        GalleryIndex.open(copy)
    (copy / "index.json").write_text(json.dumps(info))
    (copy / "faiss.index").write_bytes(b"garbage")
    with pytest.raises(PlanetlocError, match="damaged FAISS index"):
        GalleryIndex.open(copy)
    shutil.copy(tiny_index / "faiss.index", copy / "faiss.index")
    (copy / "meta.parquet").write_bytes(b"garbage")
    with pytest.raises(PlanetlocError, match="damaged index"):
        GalleryIndex.open(copy)
    with pytest.raises(PlanetlocError, match="not a finished index"):
        GalleryIndex.open(tmp_path)


def test_evaluation_maps_the_vectors_without_the_tile_table_or_faiss(
    tiny_index: Path, tmp_path: Path
) -> None:
    from planetloc.index.store import open_vectors

    full = GalleryIndex.open(tiny_index)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_index, copy)
    # What evaluation reads must not depend on the files it has no use for.
    (copy / "faiss.index").write_bytes(b"garbage")
    (copy / "meta.parquet").unlink()
    vectors = open_vectors(copy)
    assert isinstance(vectors.embeddings, np.memmap)
    assert np.array_equal(vectors.embeddings, full.embeddings)
    assert vectors.phys.keys() == full.phys.keys()
    assert all(np.array_equal(vectors.phys[b], full.phys[b]) for b in full.phys)
    (copy / "phys_tex.npy").write_bytes(b"garbage")
    with pytest.raises(PlanetlocError, match="damaged index"):
        open_vectors(copy)


def test_tile_size_comes_from_the_samples(
    tiny_checkpoint: Path, small_world: Manifest, tmp_path: Path
) -> None:
    info = build_gallery_index(
        checkpoint=str(tiny_checkpoint),
        gallery=str(small_world.path),
        out=tmp_path / "i",
        splits=("gallery",),
        progress=False,
    )
    assert info["tile_size_m"] == small_world.samples[0].meta["tile_m"]


def test_offset_helper_is_consistent() -> None:
    lat, lon = offset_latlon(10.0, 20.0, 1000.0, 0.0)
    assert haversine_m(10.0, 20.0, lat, lon) == pytest.approx(1000.0, rel=1e-4)
