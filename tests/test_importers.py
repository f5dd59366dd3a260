"""Importers: a CVG-Text tree in its own layout, and generic tables with a column mapping."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from planetloc.cli import main
from planetloc.data.importers.cvgtext import import_cvgtext, parse_filename
from planetloc.data.importers.table import import_table, parse_mapping
from planetloc.data.manifest import build_manifest, read_manifest
from planetloc.errors import PlanetlocError

FILES = {
    "train": [
        "40.7484,-73.9857_2019-05_AbCdEf123_d90_z18.jpg",
        "40.7411,-73.9897_2020-08_XyZ-987_d270_z18.jpg",
    ],
    "val": ["40.7306,-73.9866_2018-11_Pano_Q_d0_z18.jpg"],
    "test": ["40.7128,-74.0060_2021-03_LmNoP_d180_z18.jpg"],
}


def _jpg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)).save(path)


@pytest.fixture()
def cvg_tree(tmp_path: Path) -> Path:
    root = tmp_path / "CVG-Text"
    for split, names in FILES.items():
        ann = root / "annotation" / "NewYork" / f"{split}.json"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(
            json.dumps({n: f"I am standing near {n[:7]} on a busy avenue." for n in names})
        )
        for i, name in enumerate(names):
            _jpg(root / "images/NewYork/satellite" / name, i)
            _jpg(root / "images/NewYork/streetview" / name, i + 10)
    single = root / "annotation" / "Tokyo" / "single" / "test.json"
    single.parent.mkdir(parents=True)
    name = "35.6895,139.6917_2022-01_TkY_d45_z18.jpg"
    single.write_text(json.dumps({name: "I stand on a narrow lane between low houses."}))
    _jpg(root / "images/Tokyo/satellite" / name, 99)
    return root


def test_filename_encodes_coordinates_date_panorama_and_view() -> None:
    info = parse_filename("40.7484,-73.9857_2019-05_AbCdEf123_d90_z18.jpg")
    assert info == {
        "lat": 40.7484,
        "lon": -73.9857,
        "date": "2019-05",
        "panoid": "AbCdEf123",
        "yaw": 90.0,
        "zoom": 18,
    }
    with pytest.raises(PlanetlocError, match="does not match"):
        parse_filename("IMG_0001.jpg")


def test_cvgtext_tree_becomes_a_valid_manifest(cvg_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "cvg.jsonl"
    samples = import_cvgtext(cvg_tree, manifest_dir=out.parent)
    build_manifest((s.to_dict() for s in samples), out)
    manifest = read_manifest(out)
    assert len(manifest.samples) == 5
    by_split = {s: [x.id for x in manifest.by_split(s)] for s in ("train", "val", "test")}
    assert len(by_split["train"]) == 2 and len(by_split["val"]) == 1 and len(by_split["test"]) == 2
    ny = next(s for s in manifest.samples if s.id.endswith("AbCdEf123_d90_z18"))
    assert (ny.lat, ny.lon, ny.region, ny.continent) == (
        40.7484,
        -73.9857,
        "NewYork",
        "North America",
    )
    assert (
        ny.meta["view"] == "panorama"
        and ny.meta["panoid"] == "AbCdEf123"
        and ny.meta["yaw"] == 90.0
    )
    assert manifest.resolve(ny.street_path).samefile(
        cvg_tree / "images/NewYork/streetview" / FILES["train"][0]
    )
    tokyo = next(s for s in manifest.samples if s.region == "Tokyo")
    assert (
        tokyo.meta["view"] == "single" and tokyo.street_path is None and tokyo.continent == "Asia"
    )


def test_cvgtext_missing_tile_is_named_or_skipped(cvg_tree: Path, tmp_path: Path) -> None:
    (cvg_tree / "images/NewYork/satellite" / FILES["val"][0]).unlink()
    out = tmp_path / "cvg.jsonl"
    assert main(["import", "cvgtext", str(cvg_tree), "--out", str(out)]) == 2
    assert not out.exists()
    assert (
        main(["import", "cvgtext", str(cvg_tree), "--out", str(out), "--on-bad-sample", "skip"])
        == 0
    )
    assert len(read_manifest(out).samples) == 4


def test_table_with_column_mapping(tmp_path: Path) -> None:
    _jpg(tmp_path / "imgs/a.jpg", 1)
    _jpg(tmp_path / "imgs/b.jpg", 2)
    table = tmp_path / "core.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["uid", "caption", "image", "latitude", "longitude", "city", "cont", "split", "lvlm"]
        )
        writer.writerow(
            [
                1,
                "I am standing by a canal.",
                "a.jpg",
                "52.37",
                "4.89",
                "amsterdam",
                "Europe",
                "train",
                "m1",
            ]
        )
        writer.writerow(
            [2, "I see tall towers.", "b.jpg", "1.29", "103.85", "singapore", "Asia", "test", "m1"]
        )
    mapping = parse_mapping(
        [
            "id=uid",
            "text=caption",
            "sat_path=image",
            "lat=latitude",
            "lon=longitude",
            "region=city",
            "continent=cont",
        ]
    )
    out = tmp_path / "m" / "core.parquet"
    where, records = import_table(
        table, manifest_dir=out.parent, mapping=mapping, image_root=tmp_path / "imgs"
    )
    assert where == "line" and [n for n, _ in records] == [2, 3]  # CSV lines; the header is 1
    build_manifest(records, out, source=table, where=where)
    samples = read_manifest(out).samples
    assert [(s.id, s.lat, s.region, s.split) for s in samples] == [
        ("1", 52.37, "amsterdam", "train"),
        ("2", 1.29, "singapore", "test"),
    ]
    assert samples[0].meta == {"lvlm": "m1"}


def test_table_errors_name_the_row_and_column(tmp_path: Path) -> None:
    table = tmp_path / "t.jsonl"
    table.write_text(json.dumps({"id": "x", "lat": "abc"}) + "\n")
    with pytest.raises(PlanetlocError, match=r"t\.jsonl: line 1: column 'lat' = 'abc' is not"):
        import_table(table, manifest_dir=tmp_path)
    with pytest.raises(PlanetlocError, match="'colour' is not a schema field"):
        parse_mapping(["colour=c"])
