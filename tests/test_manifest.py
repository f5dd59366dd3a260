"""The sample schema: manifest round trips and every validation rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from planetloc.data.manifest import build_manifest, read_manifest, skip_report, write_manifest
from planetloc.data.schema import Sample
from planetloc.errors import PlanetlocError


def _png(path: Path, colour: tuple[int, int, int] = (10, 200, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), colour, dtype=np.uint8)).save(path)


def _record(i: int, **overrides: object) -> dict:
    row = {
        "id": f"s{i}",
        "text": f"I am standing on street number {i}.",
        "sat_path": f"sat/s{i}.png",
        "lat": 10.0 + i,
        "lon": -20.0 - i,
        "region": "testville",
        "continent": "Europe",
        "split": "train",
    }
    row.update(overrides)
    return row


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for i in range(4):
        _png(tmp_path / f"sat/s{i}.png")
    return tmp_path


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip_keeps_every_field(tree: Path, suffix: str) -> None:
    samples = [
        Sample(**_record(0), meta={"view": "panorama", "yaw": 12.5}),
        Sample(**_record(1), street_path="sat/s2.png"),
    ]
    path = write_manifest(samples, tree / f"m{suffix}")
    back = read_manifest(path)
    assert back.samples == samples
    assert back.resolve(back.samples[0].sat_path) == tree / "sat/s0.png"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lat": 91.0}, "field 'lat' = 91.0 is outside [-90, 90]"),
        ({"lat": -90.5}, "field 'lat' = -90.5 is outside [-90, 90]"),
        ({"lon": 180.01}, "field 'lon' = 180.01 is outside [-180, 180]"),
        ({"lat": "north"}, "field 'lat' must be a number"),
        ({"text": "   "}, "field 'text' is empty"),
        ({"split": "holdout"}, "field 'split' = 'holdout' is not one of"),
        ({"colour": "red"}, "unknown field 'colour' (put extra data under 'meta')"),
        ({"sat_path": "sat/missing.png"}, "field 'sat_path' = 'sat/missing.png': file not found"),
    ],
)
def test_bad_field_gives_one_line_error_naming_file_row_and_field(
    tree: Path, overrides: dict, message: str
) -> None:
    path = _write_jsonl(tree / "m.jsonl", [_record(0), _record(1, **overrides)])
    with pytest.raises(PlanetlocError) as info:
        read_manifest(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: line 2 (id='s1'): ")
    assert message in text


def test_missing_required_field(tree: Path) -> None:
    row = _record(1)
    del row["continent"]
    path = _write_jsonl(tree / "m.jsonl", [_record(0), row])
    with pytest.raises(PlanetlocError, match=r"line 2 \(id='s1'\): missing field 'continent'"):
        read_manifest(path)


def test_gallery_distractors_may_have_no_text(tree: Path) -> None:
    path = _write_jsonl(tree / "m.jsonl", [_record(0, text="", split="gallery")])
    assert read_manifest(path).samples[0].split == "gallery"


def test_duplicate_ids_are_rejected(tree: Path) -> None:
    path = _write_jsonl(tree / "m.jsonl", [_record(0), _record(1, id="s0")])
    with pytest.raises(PlanetlocError, match=r"line 2 \(id='s0'\): duplicate id 's0'"):
        read_manifest(path)


def test_zero_byte_and_truncated_images_are_rejected(tree: Path) -> None:
    (tree / "sat/s1.png").write_bytes(b"")
    path = _write_jsonl(tree / "m.jsonl", [_record(0), _record(1)])
    with pytest.raises(PlanetlocError, match=r"file is empty \(0 bytes\)"):
        read_manifest(path)
    full = (tree / "sat/s2.png").read_bytes()
    (tree / "sat/s1.png").write_bytes(full[: len(full) // 2])
    with pytest.raises(PlanetlocError, match=r"line 2.*unreadable image"):
        read_manifest(path)


def test_truncated_jpeg_is_rejected(tree: Path) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8))
    img.save(tree / "sat/full.jpg", quality=90)
    data = (tree / "sat/full.jpg").read_bytes()
    (tree / "sat/cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    rows = [_record(0, sat_path="sat/full.jpg"), _record(1, sat_path="sat/cut.jpg")]
    path = _write_jsonl(tree / "m.jsonl", rows)
    with pytest.raises(
        PlanetlocError, match=r"line 2 \(id='s1'\): field 'sat_path' = 'sat/cut.jpg': unreadable"
    ):
        read_manifest(path)


def test_non_utf8_and_invalid_json_lines(tree: Path) -> None:
    good = json.dumps(_record(0)).encode()
    bad = json.dumps(_record(1)).encode().replace(b"street", b"str\xff\xfeet")
    path = tree / "m.jsonl"
    path.write_bytes(good + b"\n" + bad + b"\n")
    with pytest.raises(PlanetlocError, match=r"line 2: text is not valid UTF-8"):
        read_manifest(path)
    path.write_bytes(good + b"\n{not json\n")
    with pytest.raises(PlanetlocError, match=r"line 2: invalid JSON"):
        read_manifest(path)


def test_skip_policy_keeps_good_rows_and_reports_bad_ones(tree: Path) -> None:
    rows = [_record(0), _record(1, lat=120.0), _record(2), _record(3, id="s0")]
    path = _write_jsonl(tree / "m.jsonl", rows)
    manifest = read_manifest(path, on_bad_sample="skip")
    assert [s.id for s in manifest.samples] == ["s0", "s2"]
    assert [(b.row, b.id) for b in manifest.skipped] == [(2, "s1"), (4, "s0")]
    assert "2 samples kept, 2 skipped: s1, s0" in skip_report(manifest)


def test_parquet_rows_are_validated_too(tree: Path) -> None:
    path = write_manifest([Sample(**_record(0)), Sample(**_record(1))], tree / "m.parquet")
    (tree / "sat/s1.png").unlink()
    with pytest.raises(PlanetlocError, match=rf"{path}: row 1 \(id='s1'\): field 'sat_path'"):
        read_manifest(path)


def test_failed_write_leaves_previous_manifest_intact(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_manifest([Sample(**_record(0))], tree / "m.jsonl")
    before = path.read_bytes()

    def explode(*args: object, **kwargs: object) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr("planetloc.data.manifest.json.dumps", explode)
    with pytest.raises(RuntimeError):
        write_manifest([Sample(**_record(1))], path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tree.iterdir()) == ["m.jsonl", "sat"]


def test_build_manifest_validates_records_with_the_reader_rules(tree: Path) -> None:
    out = tree / "out.jsonl"
    with pytest.raises(PlanetlocError, match=r"record 2 \(id='s1'\): field 'lon'"):
        build_manifest([_record(0), _record(1, lon=200.0)], out)
    assert not out.exists()
    manifest = build_manifest([_record(0), _record(1, lon=200.0)], out, on_bad_sample="skip")
    assert [s.id for s in read_manifest(out).samples] == ["s0"]
    assert manifest.skipped[0].reason.startswith("field 'lon' = 200.0")
