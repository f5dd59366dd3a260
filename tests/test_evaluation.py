"""Evaluation: metrics against hand-made and independent references (CVG-Text's cal_score
included), the tie rule, scale-safe ranking, re-ranking, and selection on val only."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from planetloc.data.manifest import Manifest, write_manifest
from planetloc.errors import PlanetlocError
from planetloc.eval.metrics import nearest_candidates, retrieval_metrics
from planetloc.eval.retrieval import Queries, Rerank, Scorer, rank_candidates, rank_full
from planetloc.geo.coords import haversine_m, offset_latlon
from planetloc.ranking import order, rank_of, top_k


def test_geographic_metrics_on_a_hand_made_matrix() -> None:
    # Three gallery tiles: at the origin, 80 m east, 30 km north.
    glat, glon = offset_latlon(0.0, 0.0, [0, 80, 0], [0, 0, 30_000])
    gallery = np.stack([glat, glon], axis=1)
    scores = np.array(
        [
            [0.9, 0.5, 0.1],  # right tile: error 0
            [0.8, 0.2, 0.1],  # picks tile 0, 80 m from tile 1
            [0.1, 0.9, 0.2],  # picks tile 1, ~30 km from tile 2
        ]
    )
    m = retrieval_metrics(scores, np.array([0, 1, 2]), gallery)
    assert m["R@1"] == pytest.approx(100 / 3)
    assert m["L@50"] == pytest.approx(100 / 3) and m["L@100"] == pytest.approx(200 / 3)
    assert m["acc@1km"] == pytest.approx(200 / 3) and m["acc@25km"] == pytest.approx(200 / 3)
    assert m["acc@200km"] == 100.0
    err = [0.0, 80.0, float(haversine_m(glat[2], glon[2], glat[1], glon[1]))]
    assert m["mean_error_km"] == pytest.approx(np.mean(err) / 1000, rel=1e-4)
    assert m["median_error_km"] == pytest.approx(0.08, rel=1e-3)


def test_one_tie_rule_for_recall_and_top1() -> None:
    # Query 0's true tile (column 2) ties with column 1: column 1 ranks first (lower row),
    # so the query is an R@1 miss AND its top-1 (for L@d) is column 1, 5 km away.
    lat, lon = offset_latlon(0.0, 0.0, [0, 0, 0], [0, 5000, 10_000])
    gll = np.stack([lat, lon], axis=1)
    scores = np.array([[0.1, 0.7, 0.7], [0.7, 0.7, 0.1]])
    m = retrieval_metrics(scores, np.array([2, 0]), gll)
    assert m["R@1"] == 50.0 and m["L@50"] == 50.0  # the second query wins its tie (row 0)
    assert rank_of(scores, np.array([2, 0])).tolist() == [1, 0]
    assert order(scores)[:, 0].tolist() == [1, 0] == top_k(scores, 1)[:, 0].tolist()


def test_top_k_follows_the_tie_rule_on_tied_rows() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.integers(0, 4, size=(3, int(rng.integers(1, 150)))).astype(np.float64)
        k = int(rng.integers(1, 20))
        assert np.array_equal(top_k(scores, k), order(scores)[:, :k])


def test_scores_are_not_cast_down() -> None:
    # Two scores equal in float32 but not in float64: the higher must win.
    scores = np.array([[1.0 + 1e-12, 1.0]])
    gll = np.array([[0.0, 0.0], [0.0, 0.01]])
    assert retrieval_metrics(scores, np.array([0]), gll)["R@1"] == 100.0


def test_non_finite_scores_are_refused() -> None:
    from planetloc.errors import PlanetlocError

    gll = np.zeros((2, 2))
    with pytest.raises(ValueError, match="non-finite"):
        retrieval_metrics(np.array([[np.nan, 0.1]]), np.array([0]), gll)
    # A user-facing error too: the command line prints it on one line, never a traceback.
    with pytest.raises(PlanetlocError, match="1 non-finite"):
        retrieval_metrics(np.array([[0.3, np.inf]]), np.array([0]), gll)


def test_galleries_smaller_than_k_or_m_work() -> None:
    gll = np.array([[0.0, 0.0], [0.0, 0.001], [0.0, 0.002]])
    scores = np.array([[0.9, 0.1, 0.2], [0.1, 0.2, 0.9]])
    for m in (None, 100):
        out = retrieval_metrics(scores, np.array([0, 1]), gll, m=m, ks=(1, 5, 10))
        assert out["R@1"] == 50.0 and out["R@5"] == out["R@10"] == 100.0


def _brute_force_m_nearest(scores, true_index, gll, m):
    ranks, top1 = [], []
    for q in range(len(scores)):
        d = [float(haversine_m(*gll[true_index[q]], *gll[g])) for g in range(len(gll))]
        cand = sorted(range(len(gll)), key=lambda g: (d[g], g))[:m]
        if true_index[q] not in cand:
            cand[-1] = true_index[q]
        ordered = sorted(cand, key=lambda g: (-scores[q, g], g))
        ranks.append(ordered.index(true_index[q]))
        top1.append(ordered[0])
    return np.array(ranks), np.array(top1)


@pytest.mark.parametrize("m", [1, 5, 17])
def test_m_nearest_protocol_matches_a_brute_force_reference(m: int) -> None:
    rng = np.random.default_rng(m)
    gll = np.stack([rng.uniform(40, 41, 60), rng.uniform(-74, -73, 60)], axis=1)
    gll[10:20] = gll[10]  # co-located tiles: equidistant at the boundary
    true = rng.integers(0, 60, 25)
    scores = rng.integers(0, 5, size=(25, 60)).astype(np.float64)  # many ties
    ranks, top1 = _brute_force_m_nearest(scores, true, gll, m)
    got = retrieval_metrics(scores, true, gll, m=m, ks=(1, 3))
    assert got["R@1"] == pytest.approx(100 * np.mean(ranks < 1))
    assert got["R@3"] == pytest.approx(100 * np.mean(ranks < 3))
    err = np.where(top1 == true, 0.0, haversine_m(*gll[true].T, *gll[top1].T))
    assert got["mean_error_km"] == pytest.approx(err.mean() / 1000, rel=1e-6)


# ------------------------------------------------------------------ CVG-Text's cal_score, as
# its public description specifies it, written independently of planetloc's code.
def _cvg_haversine_km(lat1, lon1, lat2, lon2):
    r = 6371
    dlat = math.radians(lat2 - lat1)
    dlon = math.radians(lon2 - lon1)
    a = (
        math.sin(dlat / 2) ** 2
        + math.cos(math.radians(lat1)) * math.cos(math.radians(lat2)) * math.sin(dlon / 2) ** 2
    )
    return r * 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a))


def _cal_score(similarities_gq, coords, true_index, m=100):
    """similarities (G, Q) as CVG-Text holds them; coords of gallery images."""
    out = {"R@1": 0, "R@5": 0, "R@10": 0, "L@50": 0, "L@100": 0, "L@150": 0, "dev": 0.0}
    for i, t in enumerate(true_index):
        lat0, lon0 = coords[t]
        dist = [(_cvg_haversine_km(lat0, lon0, *coords[j]), j) for j in range(len(coords))]
        dist.sort(key=lambda x: x[0])  # Python's sort is stable: ties keep gallery order
        closest = [j for _, j in dist[:m]]
        sim = similarities_gq[closest, i]
        ranked = np.argsort(-sim)
        best = [closest[k] for k in ranked]
        deviation = 0.0 if best[0] == t else _cvg_haversine_km(lat0, lon0, *coords[best[0]])
        out["R@1"] += best[0] == t
        out["R@5"] += t in best[:5]
        out["R@10"] += t in best[:10]
        out["L@50"] += deviation <= 0.05
        out["L@100"] += deviation <= 0.1
        out["L@150"] += deviation <= 0.15
        out["dev"] += deviation
    n = len(true_index)
    return {k: (100 * v / n if k != "dev" else v / n) for k, v in out.items()}


@pytest.mark.parametrize("case", ["random", "tied-and-co-located"])
def test_cvg_text_protocol_reproduces_cal_score_exactly(case: str) -> None:
    rng = np.random.default_rng(3)
    g, q = 300, 60
    coords = np.stack([rng.uniform(40.70, 40.75, g), rng.uniform(-74.01, -73.96, g)], axis=1)
    if case == "tied-and-co-located":
        coords[:120] = coords[0]  # more co-located tiles than m: the true tile may drop out
        coords = np.round(coords, 3)  # and many exact distance ties elsewhere
    true = rng.choice(g, q, replace=False)
    sims = rng.normal(size=(q, g)).astype(np.float32)
    if case == "tied-and-co-located":
        sims = np.round(sims, 1)
    ref = _cal_score(sims.T, [tuple(c) for c in coords], true.tolist())
    got = retrieval_metrics(sims, true, coords, m=100, protocol="cvg-text")
    for key in ("R@1", "R@5", "R@10", "L@50", "L@100", "L@150"):
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key
    assert got["mean_error_km"] == pytest.approx(ref["dev"], rel=1e-12, abs=1e-15)


def test_scale_safe_ranking_equals_the_full_matrix_at_any_budget() -> None:
    rng = np.random.default_rng(0)
    q = rng.integers(-2, 3, size=(37, 16)).astype(np.float32)  # integer vectors: many ties
    g = rng.integers(-2, 3, size=(211, 16)).astype(np.float32)
    true = rng.integers(0, 211, 37)
    gll = np.stack([rng.uniform(-60, 60, 211), rng.uniform(-180, 180, 211)], axis=1)
    scores = q.astype(np.float64) @ g.astype(np.float64).T
    scorer = Scorer(Queries(text=q), g)
    for budget in (64, 50_000, 1 << 30):
        got = rank_full(scorer, true, np.arange(211), keep=5, budget_bytes=budget)
        assert np.array_equal(got.ranks, rank_of(scores, true))
        assert np.array_equal(got.top, order(scores)[:, :5])
    cand = nearest_candidates(gll[true], gll, 10, true_rows=true)
    near = rank_candidates(scorer, true, cand, keep=3, chunk=7)
    ref_ranks, ref_top1 = _brute_force_m_nearest(scores, true, gll, 10)
    assert np.array_equal(near.ranks, ref_ranks) and np.array_equal(near.top[:, 0], ref_top1)


def test_full_ranking_gathers_only_tiles_that_can_enter_the_top(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import planetloc.eval.retrieval as retrieval

    rng = np.random.default_rng(3)
    q = rng.normal(size=(40, 8)).astype(np.float32)
    g = rng.normal(size=(3000, 8)).astype(np.float32)
    true = rng.integers(0, 3000, 40)
    scores = q.astype(np.float64) @ g.astype(np.float64).T
    whole_blocks = []
    monkeypatch.setattr(retrieval, "top_k", lambda s, k: whole_blocks.append(1) or top_k(s, k))
    budget = 8 * (8 + 4 * 40) * 100  # gallery blocks of 100 tiles: 30 of them
    got = rank_full(Scorer(Queries(text=q), g), true, np.arange(3000), keep=5, budget_bytes=budget)
    assert np.array_equal(got.ranks, rank_of(scores, true))
    assert np.array_equal(got.top, order(scores)[:, :5])
    # The first block (100 tiles, more than 8 per place of a 5-long list) is selected whole;
    # later ones mostly gather the few above each list's last.
    assert 1 <= len(whole_blocks) < 10


def test_full_ranking_ignores_a_last_bit_difference_in_the_true_tiles_score(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Rounded(Scorer):
        # The true score computed apart (one value) a bit below the block's BLAS value.
        def true(self, qs: slice, true_rows: np.ndarray) -> np.ndarray:
            return np.nextafter(super().true(qs, true_rows), -np.inf)

    rng = np.random.default_rng(4)
    q = rng.normal(size=(30, 8)).astype(np.float32)
    g = rng.normal(size=(500, 8)).astype(np.float32)
    true = rng.integers(0, 500, 30)
    scores = q.astype(np.float64) @ g.astype(np.float64).T
    got = rank_full(Rounded(Queries(text=q), g), true, np.arange(500), keep=1, progress="ranking t")
    # Ranks past the kept top come from counting the tiles that beat the true one.
    assert np.array_equal(got.ranks, rank_of(scores, true))
    # A labelled ranking shows its progress in gallery tiles.
    err = capsys.readouterr().err
    assert "ranking t" in err and "500/500" in err


def test_copies_of_the_true_tile_rank_by_row_whatever_the_block_arithmetic() -> None:
    # Blank tiles (sea, cloud) share one embedding: under the tie rule a copy at a lower row
    # ranks before the true tile and one at a higher row after, though BLAS block products
    # of equal columns may differ in the last bit.
    rng = np.random.default_rng(5)
    q = rng.normal(size=(64, 256))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g = rng.normal(size=(3000, 256))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    g[::10] = g[0]
    true = np.full(64, 1500)  # the 151st copy
    scorer = Scorer(Queries(text=q), g)
    # Each pair on its own, as a dot product (equal tiles: bit-equal scores).
    pair = np.array([(q[i] * g).sum(-1) for i in range(64)])
    got = rank_full(scorer, true, np.arange(3000), keep=10, budget_bytes=8 * (256 + 4 * 64) * 700)
    assert np.array_equal(got.ranks, rank_of(pair, true))
    assert np.array_equal(got.top, order(pair)[:, :10])


def test_reranking_touches_the_top_of_the_protocols_candidates_only() -> None:
    rng = np.random.default_rng(1)
    q = rng.normal(size=(20, 8)).astype(np.float32)
    g = rng.normal(size=(400, 8)).astype(np.float32)
    true = rng.integers(0, 400, 20)
    qp = {"color": rng.normal(size=(20, 4)).astype(np.float32)}
    gp = {"color": rng.normal(size=(400, 4)).astype(np.float32)}
    scorer = Scorer(Queries(text=q), g)
    plain = rank_full(scorer, true, np.arange(400), keep=60)
    same = rank_full(scorer, true, np.arange(400), keep=60, rerank=Rerank(0.0, 50, qp, gp))
    assert np.array_equal(plain.ranks, same.ranks) and np.array_equal(plain.top, same.top)
    moved = rank_full(scorer, true, np.arange(400), keep=60, rerank=Rerank(5.0, 50, qp, gp))
    assert not np.array_equal(moved.top, plain.top)
    # The top 50 are re-ordered among themselves; the rest keep their order.
    for a, b in zip(plain.top, moved.top, strict=True):
        assert set(a[:50]) == set(b[:50]) and np.array_equal(a[50:], b[50:])
    # Under the m protocol the re-ranked set is the top of the m candidates, not of the gallery.
    gll = np.stack([rng.uniform(0, 1, 400), rng.uniform(0, 1, 400)], axis=1)
    cand = nearest_candidates(gll[true], gll, 30, true_rows=true)
    near = rank_candidates(scorer, true, cand, keep=30, rerank=Rerank(5.0, 10, qp, gp))
    base = rank_candidates(scorer, true, cand, keep=30)
    for i in range(len(true)):
        assert set(near.top[i]) == set(cand[i])
        assert set(near.top[i, :10]) == set(base.top[i, :10])
        assert np.array_equal(near.top[i, 10:], base.top[i, 10:])


def _tiny_dataset(root: Path, world: Manifest, n_test: int) -> Path:
    """A few test samples (fewer gallery tiles than k and m) plus the world's train/val rows."""
    # Copies: the session's world is shared by other tests and must not change.
    samples = [copy.deepcopy(s) for s in world.samples if s.split in ("train", "val")]
    samples += [copy.deepcopy(s) for s in world.by_split("test")[:n_test]]
    for s in samples:
        s.sat_path = str(world.resolve(s.sat_path))
    return write_manifest(samples, root / "manifest.jsonl")


def test_evaluate_with_fewer_gallery_tiles_than_k_and_m(
    small_world: Manifest, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from planetloc.workflows.evaluation import run_evaluation

    data = _tiny_dataset(tmp_path / "d", small_world, 4)
    report = run_evaluation(
        str(data), str(tmp_path / "ev"), checkpoint=str(tiny_checkpoint), progress=False
    )
    world = report["sets"]["world"]
    assert world["full"]["gallery"] == 4 and world["m100"]["candidates"] == 4
    assert world["full"]["R@10"] == 100.0  # every query's tile is within its 4 candidates


def test_evaluation_reads_its_table_once(
    small_world: Manifest, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import planetloc.eval.evaluate as evaluate
    import planetloc.workflows.evaluation as workflow
    from planetloc.eval.protocols import evaluation_table

    reads: list[str] = []

    def counted(data):
        reads.append(str(data))
        return evaluation_table(data)

    monkeypatch.setattr(evaluate, "evaluation_table", counted)
    monkeypatch.setattr(workflow, "evaluation_table", counted)
    data = _tiny_dataset(tmp_path / "d", small_world, 4)
    with pytest.raises(PlanetlocError, match="--m must be at least 1"):
        workflow.run_evaluation(
            str(data), str(tmp_path / "ev"), checkpoint=str(tiny_checkpoint), m=0, progress=False
        )
    assert reads == []  # a bad option is refused before the table is read
    workflow.run_evaluation(
        str(data), str(tmp_path / "ev"), checkpoint=str(tiny_checkpoint), progress=False
    )
    # A million-row table takes minutes and over a GB: the report reuses the evaluation's.
    assert len(reads) == 1 and (tmp_path / "ev" / "eval.json").is_file()


def test_zero_shot_evaluation_and_the_runs_own_alpha(
    small_world: Manifest, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from planetloc.model.checkpoint import read_checkpoint
    from planetloc.workflows.evaluation import run_evaluation
    from planetloc.workflows.models import zero_shot

    zs = run_evaluation(
        str(small_world.path),
        str(tmp_path / "zs"),
        loaded=zero_shot("tiny-bert-cnn", str(small_world.path)),
        progress=False,
    )
    assert zs["model"]["method"] == "zero-shot" and zs["protocol"]["rerank"]["alpha"] == 0.0
    assert zs["sets"]["world"]["full"]["queries"] == len(small_world.by_split("test"))
    chosen = read_checkpoint(tiny_checkpoint).extra.get("selection", {})
    report = run_evaluation(
        str(small_world.path), str(tmp_path / "ev"), checkpoint=str(tiny_checkpoint), progress=False
    )
    # Trained with eval_every 0: alpha was still chosen on val, once, at the end.
    assert chosen and chosen["split"] == "val"
    assert report["protocol"]["rerank"]["alpha"] == chosen["alpha"]
    assert "val" in report["protocol"]["rerank"]["source"]
    given = run_evaluation(
        str(small_world.path),
        str(tmp_path / "g"),
        checkpoint=str(tiny_checkpoint),
        rerank_alpha=0.7,
        progress=False,
    )
    assert given["protocol"]["rerank"] == {
        "alpha": 0.7,
        "top": 50,
        "source": "given (--rerank-alpha)",
    }


def test_selection_never_reads_test_data(
    small_world: Manifest, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from planetloc.eval.protocols import split_set
    from planetloc.eval.selection import select_rerank_alpha
    from planetloc.model.checkpoint import load_model

    model = load_model(tiny_checkpoint)
    before = select_rerank_alpha(model, split_set(small_world.path, "val"))
    # The same dataset with every test-side row scrambled (texts swapped, tiles moved): the
    # selection cannot change if it never reads them.
    rows = [copy.deepcopy(s) for s in small_world.samples]
    tests = [s for s in rows if s.split in ("test", "test_unseen", "gallery")]
    texts = [s.text for s in tests][::-1]
    for s, t in zip(tests, texts, strict=True):
        s.text = t or "x"
        s.lat = -s.lat
    for s in rows:
        s.sat_path = str(small_world.resolve(s.sat_path))
    scrambled = write_manifest(rows, tmp_path / "m.jsonl")
    after = select_rerank_alpha(model, split_set(scrambled, "val"))
    assert before == after
    with pytest.raises(PlanetlocError, match="for evaluation, not for choosing"):
        split_set(small_world.path, "test")


def test_a_style_query_reads_the_description_itself_where_it_is_in_that_style(
    small_world: Manifest,
) -> None:
    from planetloc.data.synth.describe import TRAIN_STYLES
    from planetloc.eval.evaluate import query_texts
    from planetloc.eval.protocols import evaluation_table

    table = evaluation_table(small_world.path)
    rows = table.rows("test")
    for style in TRAIN_STYLES:
        texts = query_texts(table, rows, style)
        own = [i for i, r in enumerate(rows) if table.meta[r]["style"] == style]
        others = [i for i in range(len(rows)) if i not in own]
        assert own and others
        assert all(texts[i] == table.text[rows[i]] for i in own)
        assert all(texts[i] == table.meta[rows[i]]["alt_texts"][style] for i in others)


def test_examples_quote_the_query_in_the_phrasing_it_was_asked(
    small_world: Manifest, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from planetloc.data.synth.describe import HELD_OUT_STYLE
    from planetloc.workflows.evaluation import run_evaluation

    report = run_evaluation(
        str(small_world.path),
        str(tmp_path / "styled"),
        checkpoint=str(tiny_checkpoint),
        text_style=HELD_OUT_STYLE,
        progress=False,
    )
    assert report["protocol"]["text_style"] == HELD_OUT_STYLE
    samples = {s.id: s for s in small_world.samples}
    assert report["examples"]
    for example in report["examples"]:
        sample = samples[example["query"]]
        assert example["text"] == sample.meta["alt_texts"][HELD_OUT_STYLE] != sample.text
