"""The million-tile evaluation benchmark spread over sittings: which earlier runs it counts,
and when their times add up to the whole phase."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import eval_scale

    return eval_scale


def _run(before: int, after: int, seconds: float = 10.0, **extra: object) -> dict:
    return {"seconds": seconds, "shards_before": before, "shards_after": after, **extra}


def test_runs_count_as_a_whole_only_when_they_chain_from_nothing_to_the_end(bench) -> None:
    assert bench.chained([_run(0, 5)], 5)
    assert bench.chained([_run(0, 2), _run(2, 5)], 5)
    assert not bench.chained([_run(0, 2), _run(3, 5)], 5)  # a run went unrecorded
    assert not bench.chained([_run(1, 5)], 5)  # began from shards of no record
    assert not bench.chained([_run(0, 2)], 5)  # not finished
    assert not bench.chained([], 5)
    gen = [_run(0, 3, 100.0, workers=2, shards=8), _run(3, 8, 60.0, workers=1, shards=8)]
    assert bench.generation_summary(gen, 320) == {
        "seconds": 160.0,
        "runs": 2,
        "samples_per_s": 2.0,
        "samples_per_s_per_core": round(320 / 260, 1),
    }
    assert bench.generation_summary(gen[1:], 320) is None


def _memory(growth: float, **extra: object) -> dict:
    return {
        "peak_rss_gb": growth + 1,
        "rss_growth_gb": growth,
        "peak_anon_gb": growth + 0.5,
        "anon_growth_gb": growth - 0.1,
        "max_processes": 1,
        **extra,
    }


def test_an_encoding_over_two_runs_sums_time_and_keeps_the_largest_memory(bench) -> None:
    stopped = _run(0, 2, 100.0, encode_s=100.0, finished=False, **_memory(1.5))
    finished = _run(2, 5, 80.0, encode_s=70.0, finished=True, **_memory(1.2))
    whole = bench.encoding_summary([stopped, finished], 5, embeddings_gb=0.5)
    assert whole["seconds"] == 180.0 and whole["encode_s"] == 170.0 and whole["runs"] == 2
    assert whole["peak_rss_gb"] == 2.5 and whole["rss_growth_gb"] == 1.5
    # The stopped run never mapped the embeddings: all of its growth is extra.
    assert whole["extra_over_embeddings_gb"] == 1.5 and whole["timed_whole"]
    assert not bench.encoding_summary([finished], 5, embeddings_gb=0.5)["timed_whole"]
    assert bench.encoding_summary([], 5, embeddings_gb=0.5) == {"runs": 0, "timed_whole": False}


def test_encoding_runs_are_kept_in_the_store_for_its_world(bench, tmp_path: Path) -> None:
    store = tmp_path / "gallery-index-abc"
    assert bench.earlier_encoding_runs(store, "w") == []
    bench.record_encoding_runs(store, "w", [_run(0, 1)])
    assert bench.earlier_encoding_runs(store, "w") == [_run(0, 1)]
    assert bench.earlier_encoding_runs(store, "another world") == []
    (store / bench.ENCODING_RUNS).write_text('{"world": ')  # cut short
    assert bench.earlier_encoding_runs(store, "w") == []


def test_earlier_results_are_read_whole_or_not_at_all(bench, tmp_path: Path) -> None:
    assert bench.earlier_results(tmp_path / "missing.json") == {}
    (tmp_path / "cut.json").write_text('{"config": ')
    assert bench.earlier_results(tmp_path / "cut.json") == {}
    (tmp_path / "ok.json").write_text('{"config": {"world": "w"}}')
    assert bench.earlier_results(tmp_path / "ok.json") == {"config": {"world": "w"}}


def _info(count: int, reused: int) -> dict:
    return {"shards": {"count": count, "reused": reused}}


def test_which_runs_an_encoding_records(bench) -> None:
    update = bench.updated_encoding_runs
    mine = {"seconds": 5.0, "shards_after": 3}
    # Stopped part-way: recorded, not finished.
    runs, write = update([], before=0, info={}, stopped=True, record=mine)
    assert write and runs == [{**mine, "shards_before": 0, "finished": False}]
    # Resumed and finished: chained onto the stopped one.
    done = {"seconds": 4.0, "shards_after": 5}
    runs, write = update(runs, before=3, info=_info(5, 3), stopped=False, record=done)
    assert write and [r["finished"] for r in runs] == [False, True]
    assert bench.chained(runs, 5)
    # Only verifying the finished store adds nothing.
    assert update(runs, before=5, info=_info(5, 5), stopped=False, record=done) == (runs, False)
    # A run that failed (not stopped) records nothing.
    assert update(runs, before=5, info={}, stopped=False, record=done) == (runs, False)
    # Stopped after storing every shard but before finishing the store: the next run, which
    # reuses every shard, merged and built the search structure, so it counts.
    stopped_late = [{**mine, "shards_after": 5, "shards_before": 0, "finished": False}]
    runs, write = update(stopped_late, before=5, info=_info(5, 5), stopped=False, record=done)
    assert write and len(runs) == 2 and runs[-1]["finished"] and bench.chained(runs, 5)
    # Stored shards of another world were encoded again: earlier records no longer apply.
    runs, write = update(stopped_late, before=5, info=_info(5, 1), stopped=False, record=done)
    assert write and runs == [{**done, "shards_before": 1, "finished": True}]
    assert not bench.chained(runs, 5)


def test_the_worlds_disk_size_leaves_out_the_feature_cache(bench, tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "a.tar").write_bytes(b"x" * 3000)
    (tmp_path / ".planetloc-cache" / "trunk").mkdir(parents=True)
    (tmp_path / ".planetloc-cache" / "trunk" / "tokens.f16").write_bytes(b"y" * 5000)
    assert bench.world_disk_gb(tmp_path) * bench.GB == pytest.approx(3000)
