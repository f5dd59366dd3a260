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


def _run(before: int, after: int, seconds: float = 10.0) -> dict:
    return {"seconds": seconds, "shards_before": before, "shards_after": after}


def test_encoding_runs_count_only_when_they_add_up_to_the_whole_gallery(bench) -> None:
    assert bench.index_summary([_run(0, 5, 12.5)], 5) == {"seconds": 12.5, "runs": 1}
    assert bench.index_summary([_run(0, 2), _run(2, 5, 4.0)], 5) == {"seconds": 14.0, "runs": 2}
    assert bench.index_summary([_run(0, 2), _run(3, 5)], 5) is None  # a run went unrecorded
    assert bench.index_summary([_run(1, 5)], 5) is None  # began from shards of no record
    assert bench.index_summary([_run(0, 2)], 5) is None  # not finished
    assert bench.index_summary([], 5) is None


def test_earlier_encoding_runs_are_those_of_the_same_world_model_and_store(
    bench, tmp_path: Path
) -> None:
    store = tmp_path / "index"
    earlier = {
        "config": {"world": "w"},
        "model_fingerprint": "abc",
        "phases": {"index_runs": [_run(0, 1)]},
    }
    assert bench.earlier_index_runs(earlier, "w", "abc", store) == []  # nothing stored
    (store / "shards").mkdir(parents=True)
    (store / "shards" / "00000.npz").write_bytes(b"")
    assert bench.earlier_index_runs(earlier, "w", "abc", store) == [_run(0, 1)]
    assert bench.earlier_index_runs(earlier, "w", "other model", store) == []
    assert bench.earlier_index_runs(earlier, "another world", "abc", store) == []
    assert bench.earlier_index_runs({}, "w", "abc", store) == []


def test_earlier_results_are_read_whole_or_not_at_all(bench, tmp_path: Path) -> None:
    assert bench.earlier_results(tmp_path / "missing.json") == {}
    (tmp_path / "cut.json").write_text('{"config": ')
    assert bench.earlier_results(tmp_path / "cut.json") == {}
    (tmp_path / "ok.json").write_text('{"config": {"world": "w"}}')
    assert bench.earlier_results(tmp_path / "ok.json") == {"config": {"world": "w"}}
