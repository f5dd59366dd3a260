"""Properties of the sample schema, manifests and ranking metrics, over generated inputs.

Each property is checked against a small reference written here from the documented rules
(the schema's field rules; the tie rule "score highest first, then gallery row lowest first"),
not against the code under test.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from planetloc.data.manifest import read_manifest, write_manifest
from planetloc.data.schema import ALL_FIELDS, SPLITS, Sample, check_record
from planetloc.errors import PlanetlocError
from planetloc.eval.metrics import retrieval_metrics
from planetloc.geo.coords import haversine_m
from planetloc.ranking import order, rank_of, top_k

# No example database: runs leave nothing behind in the checkout.
FAST = settings(max_examples=150, deadline=None, database=None)
MEDIUM = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
TEXT_FIELDS = ("id", "text", "sat_path", "region", "continent", "split")


# --------------------------------------------------------------------------- the sample schema
def json_values(max_leaves: int = 6) -> st.SearchStrategy:
    """Anything a JSON row may hold, non-finite and huge numbers included."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**400), max_value=10**400),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=max_leaves,
    )


@st.composite
def valid_records(draw: st.DrawFn) -> dict:
    """A record that satisfies every schema rule."""
    split = draw(st.sampled_from(SPLITS))
    text = draw(st.text(max_size=40))
    if split != "gallery" and not text.strip():
        text = "I stand by a river 🌊" + text
    record = {
        "id": draw(st.text(min_size=1, max_size=20).filter(str.strip)),
        "text": text,
        "sat_path": draw(st.text(min_size=1, max_size=20).filter(str.strip)),
        "lat": draw(st.floats(-90, 90) | st.integers(-90, 90)),
        "lon": draw(st.floats(-180, 180) | st.integers(-180, 180)),
        "region": draw(st.text(max_size=10)),
        "continent": draw(st.text(max_size=10)),
        "split": split,
    }
    if draw(st.booleans()):
        record["street_path"] = draw(st.none() | st.text(min_size=1, max_size=10).filter(str.strip))
    if draw(st.booleans()):
        record["meta"] = draw(st.dictionaries(st.text(max_size=5), json_values(), max_size=3))
    return record


@st.composite
def records(draw: st.DrawFn) -> dict:
    """A valid record with a few fields replaced by anything, removed, or added."""
    record = draw(valid_records())
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([*ALL_FIELDS, "extra", "colour"]))
        action = draw(st.sampled_from(["replace", "remove", "edge"]))
        if action == "remove":
            record.pop(name, None)
        elif action == "edge":
            record[name] = draw(
                st.sampled_from(
                    [
                        "",
                        "   ",
                        "\n",
                        "<script>alert(1)</script>",
                        float("nan"),
                        float("inf"),
                        -float("inf"),
                        1e400,
                        10**400,
                        -(10**400),
                        90.0000001,
                        -180.5,
                        True,
                        [],
                        {},
                    ]
                )
            )
        else:
            record[name] = draw(json_values())
    return record


def reference_problem(record: dict) -> str | None:
    """Which documented rule ``record`` breaks (None: it is a valid sample)."""
    for name in ("id", "text", "sat_path", "lat", "lon", "region", "continent", "split"):
        if record.get(name) is None:
            return f"missing {name}"
    if set(record) - set(ALL_FIELDS):
        return "unknown field"
    for name in TEXT_FIELDS:
        if not isinstance(record[name], str):
            return f"{name} not text"
    if not record["id"].strip():
        return "empty id"
    for name, bound in (("lat", 90), ("lon", 180)):
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name} not a number"
        if not (-bound <= value <= bound):  # False for NaN, and exact for huge integers
            return f"{name} out of range"
    if record["split"] not in SPLITS:
        return "unknown split"
    if record["split"] != "gallery" and not record["text"].strip():
        return "empty text"
    if not record["sat_path"].strip():
        return "empty sat_path"
    street = record.get("street_path")
    if street is not None and not isinstance(street, str):
        return "street_path not text"
    # An empty value of any kind carries no data: it reads as "no meta" (the reader's rule).
    meta = record.get("meta")
    if meta and not isinstance(meta, dict):
        return "meta not an object"
    return None


PLAIN = {"id": "a", "text": "t", "sat_path": "s.png", "lat": 0.0, "lon": 0.0}
PLAIN |= {"region": "r", "continent": "c", "split": "test"}


@FAST
@given(records())
@example({**PLAIN, "lat": 10**400})
@example({**PLAIN, "lon": float("nan")})
@example({**PLAIN, "meta": []})
def test_a_record_becomes_a_valid_sample_or_one_line_reason(record: dict) -> None:
    snapshot = json.dumps(record, sort_keys=True, default=repr)
    sample, reason = check_record(record)  # must never raise, whatever the record holds
    assert json.dumps(record, sort_keys=True, default=repr) == snapshot  # input untouched
    assert (sample is None) != (reason is None)
    expected = reference_problem(record)
    if sample is None:
        assert isinstance(reason, str) and reason.strip()
        assert len(reason.splitlines()) == 1, reason
        assert expected is not None, f"valid record refused: {reason}"
        return
    assert expected is None, f"accepted a record with {expected}: {record!r}"
    assert isinstance(sample, Sample)
    assert all(isinstance(getattr(sample, n), str) for n in TEXT_FIELDS)
    assert sample.id.strip() and sample.sat_path.strip()
    assert sample.split in SPLITS
    assert sample.text.strip() or sample.split == "gallery"
    for value, bound in ((sample.lat, 90), (sample.lon, 180)):
        assert type(value) is float and math.isfinite(value) and -bound <= value <= bound
    assert (sample.lat, sample.lon) == (record["lat"], record["lon"])
    assert sample.street_path is None or (
        isinstance(sample.street_path, str) and sample.street_path
    )
    assert sample.street_path == (record.get("street_path") or None)
    assert isinstance(sample.meta, dict) and sample.meta == (record.get("meta") or {})
    assert all(getattr(sample, n) == record[n] for n in TEXT_FIELDS)


# --------------------------------------------------------------------------- manifests
def samples_from(record: dict) -> Sample:
    sample, reason = check_record(record)
    assert sample is not None, reason
    return sample


def meta_values() -> st.SearchStrategy:
    """What ``meta`` may hold and JSON keeps exactly: finite numbers, text, lists, objects."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    )


@st.composite
def manifest_samples(draw: st.DrawFn) -> list[Sample]:
    rows = draw(st.lists(valid_records(), min_size=1, max_size=6, unique_by=lambda r: r["id"]))
    for row in rows:
        row["lat"], row["lon"] = float(row["lat"]), float(row["lon"])
        row["meta"] = draw(st.dictionaries(st.text(max_size=6), meta_values(), max_size=4))
    return [samples_from(r) for r in rows]


UNICODE = Sample(
    id="東京/🗼-0",
    text="I stand on a street 🚶 with neon signs: 「渋谷」, café, naïve, \u2028 line sep",
    sat_path="tiles/🗺️.png",
    lat=-0.0,
    lon=179.99999999999997,
    region="tōkyō",
    continent="Asia",
    split="test",
    street_path="street/ü.jpg",
    meta={"emoji": "🌍", "nested": {"list": [1, 2.5, None, True, "ß"]}, "big": 2**63 + 1},
)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
@MEDIUM
@given(samples=manifest_samples())
@example(samples=[UNICODE])
def test_manifest_round_trips_exactly(suffix: str, samples: list[Sample], tmp_path: Path) -> None:
    path = tmp_path / f"m{suffix}"
    write_manifest(samples, path)
    read = read_manifest(path, check_images=False)
    assert read.samples == samples
    assert not read.skipped
    # Bit-exact coordinates, not merely equal ones (-0.0 == 0.0).
    assert [(math.copysign(1, s.lat), s.lon.hex()) for s in read.samples] == [
        (math.copysign(1, s.lat), s.lon.hex()) for s in samples
    ]


CORRUPT_LINES = [
    b"{not json",
    b"[1, 2, 3]",
    b"42",
    b'"a string"',
    b"null",
    b'{"id": "\xff\xfe"}',
    b'{"id": "x", "lat": NaN}',
    b"<script>alert(1)</script>",
]


@MEDIUM
@given(
    samples=manifest_samples(),
    bad=st.sampled_from(CORRUPT_LINES),
    at=st.integers(0, 6),
    blanks=st.integers(0, 2),
)
def test_a_corrupt_line_is_named_by_its_1_based_number(
    samples: list[Sample], bad: bytes, at: int, blanks: int, tmp_path: Path
) -> None:
    path = tmp_path / "m.jsonl"
    write_manifest(samples, path)
    lines = path.read_bytes().splitlines(keepends=True)
    # Blank lines are skipped but still counted: numbers are the file's own line numbers.
    lines[:0] = [b"\n"] * blanks
    at = min(at + blanks, len(lines))
    lines.insert(at, bad + b"\n")
    path.write_bytes(b"".join(lines))
    with pytest.raises(PlanetlocError) as info:
        read_manifest(path, check_images=False)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert re.search(rf": line {at + 1}\b", message), message
    kept = read_manifest(path, check_images=False, on_bad_sample="skip")
    assert [b.row for b in kept.skipped] == [at + 1]
    assert kept.samples == samples


# --------------------------------------------------------------------------- ranking metrics
def reference_order(row: np.ndarray) -> list[int]:
    return sorted(range(len(row)), key=lambda j: (-row[j], j))


def reference_rank(row: np.ndarray, true: int, among: list[int] | None = None) -> int:
    """Position of ``true`` among ``among`` (default: every column) under the tie rule."""
    among = list(range(len(row))) if among is None else among
    return [j for j in sorted(among, key=lambda j: (-row[j], j))].index(true)


def recall(ranks: list[int], k: int) -> float:
    return 100.0 * sum(r < k for r in ranks) / len(ranks)


@st.composite
def score_matrices(draw: st.DrawFn, max_columns: int = 80) -> np.ndarray:
    """(Q, C) scores drawn from a few integers: many ties. Wide enough to reach the partial
    selection path of ``top_k`` (more than 64 columns)."""
    q = draw(st.integers(1, 5))
    c = draw(st.integers(1, max_columns))
    values = st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0])
    return draw(arrays(np.float64, (q, c), elements=values))


KS = (1, 2, 3, 5, 10)


@FAST
@given(scores=score_matrices(), k=st.integers(-1, 90))
@example(scores=np.tile([1.0, 2.0, 2.0, 0.0, 2.0] * 14, (2, 1)), k=10)  # 70 columns, tied
def test_order_top_k_and_rank_follow_the_tie_rule(scores: np.ndarray, k: int) -> None:
    expected = [reference_order(row) for row in scores]
    assert order(scores).tolist() == expected
    picked = top_k(scores, k)
    assert picked.shape == (len(scores), max(0, min(k, scores.shape[1])))
    assert picked.tolist() == [e[: max(0, k)] for e in expected]
    true = np.arange(len(scores)) % scores.shape[1]
    assert rank_of(scores, true).tolist() == [
        reference_rank(row, int(t)) for row, t in zip(scores, true, strict=True)
    ]


@st.composite
def retrieval_cases(draw: st.DrawFn, distinct: bool = False) -> tuple:
    scores = draw(score_matrices(max_columns=40))
    q, g = scores.shape
    true = np.asarray(draw(st.lists(st.integers(0, g - 1), min_size=q, max_size=q)))
    if distinct:
        cells = draw(
            st.lists(
                st.tuples(st.integers(-800, 800), st.integers(-1700, 1700)),
                min_size=g,
                max_size=g,
                unique=True,
            )
        )
        latlon = np.asarray(cells, dtype=np.float64) * 0.1
    else:  # a handful of places: many tiles share a location
        places = [(48.85, 2.35), (-34.6, -58.4), (35.68, 139.69), (-33.87, 151.21)]
        latlon = np.asarray(draw(st.lists(st.sampled_from(places), min_size=g, max_size=g)))
    return scores, true, latlon


def reference_candidates(latlon: np.ndarray, true: int, m: int) -> list[int]:
    """planetloc's m-nearest set: nearest by haversine, ties by row, true tile forced in."""
    dist = haversine_m(latlon[true, 0], latlon[true, 1], latlon[:, 0], latlon[:, 1])
    rows = sorted(range(len(latlon)), key=lambda j: (dist[j], j))[:m]
    if true not in rows:
        rows[-1] = true
    return rows


@FAST
@given(case=retrieval_cases(), m=st.integers(1, 12))
def test_recall_matches_the_reference_and_is_monotone(case: tuple, m: int) -> None:
    scores, true, latlon = case
    full = retrieval_metrics(scores, true, latlon, ks=KS)
    near = retrieval_metrics(scores, true, latlon, m=m, ks=KS)
    full_ranks = [reference_rank(row, int(t)) for row, t in zip(scores, true, strict=True)]
    near_ranks = [
        reference_rank(row, int(t), reference_candidates(latlon, int(t), m))
        for row, t in zip(scores, true, strict=True)
    ]
    for k in KS:
        assert full[f"R@{k}"] == pytest.approx(recall(full_ranks, k), abs=1e-9)
        assert near[f"R@{k}"] == pytest.approx(recall(near_ranks, k), abs=1e-9)
    for report in (full, near):
        values = [report[f"R@{k}"] for k in KS]
        assert all(0.0 <= v <= 100.0 for v in values)
        assert values == sorted(values)  # R@K never falls as K grows
    # The true tile's m-nearest set is a subset of the gallery that keeps the true tile, and
    # both rank by the same rule: no tile that beat it in the subset was absent from the
    # full gallery, so its rank can only improve. This holds even where tiles share places.
    for k in KS:
        assert near[f"R@{k}"] >= full[f"R@{k}"]
    # m at least the gallery size is the full gallery.
    everything = retrieval_metrics(scores, true, latlon, m=scores.shape[1], ks=KS)
    assert {k: everything[f"R@{k}"] for k in KS} == {k: full[f"R@{k}"] for k in KS}


@FAST
@given(case=retrieval_cases(distinct=True), m=st.integers(1, 12))
def test_cvgtext_nearest_never_loses_to_the_full_gallery_without_ties(case: tuple, m: int) -> None:
    """CVG-Text's protocol forces nothing and breaks ties with numpy's unstable sort; with
    every tile at its own place the true tile is its own nearest (distance 0), and without
    tied scores the order is unambiguous, so the m-nearest R@K is at least the full one."""
    scores, true, latlon = case
    q, g = scores.shape
    scores = scores + np.arange(g)[None, :] * 1e-3 + np.arange(q)[:, None] * 1e-5  # no ties
    full = retrieval_metrics(scores, true, latlon, ks=KS, protocol="cvg-text")
    near = retrieval_metrics(scores, true, latlon, m=m, ks=KS, protocol="cvg-text")
    for k in KS:
        assert near[f"R@{k}"] >= full[f"R@{k}"]
        assert full[f"R@{k}"] == pytest.approx(
            recall([reference_rank(r, int(t)) for r, t in zip(scores, true, strict=True)], k)
        )


@FAST
@given(
    case=retrieval_cases(),
    bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    where=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    m=st.none() | st.integers(1, 5),
    protocol=st.sampled_from(["planetloc", "cvg-text"]),
)
def test_a_non_finite_score_is_an_error(
    case: tuple, bad: float, where: tuple[int, int], m: int | None, protocol: str
) -> None:
    scores, true, latlon = case
    scores = scores.copy()
    scores[where[0] % scores.shape[0], where[1] % scores.shape[1]] = bad
    with pytest.raises(ValueError):
        retrieval_metrics(scores, true, latlon, m=m, protocol=protocol)
    for rank_fn in (order, lambda s: top_k(s, 3), lambda s: rank_of(s, true)):
        with pytest.raises(ValueError):
            rank_fn(scores)
