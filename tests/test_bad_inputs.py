"""Every subcommand over a table of bad inputs: a clear refusal, never a traceback.

The contract of the ``planetloc`` command: bad input of any kind ends with exit status 2 and
exactly one line on stderr naming the bad thing (file, row, field, argument or value), no
traceback, and no existing file changed. Each case below builds its bad input in a fresh
folder, runs the command in-process, and checks all of that, including a byte-and-mtime
snapshot of every file the command could see. A few cases run as real processes, where a
traceback or a broken-pipe message could escape past ``main``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from planetloc.cli import main
from planetloc.data.manifest import Manifest

HUGE = 100_000  # characters in a huge argument (a real ARG_MAX is ~2 MB)
NOT_UTF8 = os.fsdecode(b"\xff")  # what a Latin-1 file name becomes in sys.argv
HTML = "<script>alert(1)</script>"
BAD_URL = "http://127.0.0.1:9/{z}/{x}/{y}.png"  # the discard port: never fetched here

# A model config for open_clip checkpoints: a 1-layer ViT and text tower of width 32.
OPENCLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 520, "width": 32, "heads": 2, "layers": 1},
}


@dataclass
class Env:
    """Where a case builds its bad input, and the shared world, model and index it may use."""

    tmp: Path
    world: Manifest
    checkpoint: Path
    index: Path
    openclip: Path  # a folder holding a valid open_clip checkpoint and a CLIP tokenizer

    def file(self, name: str, data: str | bytes) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
        return str(path)

    def folder(self, name: str) -> str:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def rows(self, *splits: str) -> list[dict]:
        """Rows of the shared world in ``splits``, image paths made absolute."""
        out = []
        for s in self.world.samples:
            if s.split in splits:
                row = s.to_dict()
                for key in ("sat_path", "street_path"):
                    if row[key]:
                        row[key] = str(self.world.resolve(row[key]).resolve())
                out.append(row)
        return out

    def manifest(self, name: str, rows: list[dict]) -> str:
        return self.file(name, "".join(json.dumps(r) + "\n" for r in rows))

    def row(self, **changes: object) -> dict:
        """One valid test row of the world, with ``changes`` applied (None removes a field)."""
        row = self.rows("test")[0]
        for key, value in changes.items():
            if value is None:
                row.pop(key, None)
            else:
                row[key] = value
        return row

    def tile_bytes(self) -> bytes:
        """The encoded satellite tile of one world sample: a real image."""
        return self.world.resolve(self.world.samples[0].sat_path).read_bytes()

    def few_tiles(self, name: str = "few.jsonl") -> str:
        """A manifest of four test samples: quick to encode."""
        return self.manifest(name, self.rows("test")[:4])

    def one_row(self, name: str, **changes: object) -> str:
        return self.manifest(name, [self.row(**changes)])

    def raw_rows(self, name: str, *lines: str) -> str:
        return self.file(name, "".join(line + "\n" for line in lines))

    def index_copy(self, name: str = "idx") -> Path:
        """A private copy of the shared index, to damage."""
        import shutil

        return Path(shutil.copytree(self.index, self.tmp / name))

    def damaged_index(self, file: str, data: str | bytes) -> str:
        folder = self.index_copy()
        target = folder / file
        if isinstance(data, str):
            target.write_text(data, encoding="utf-8")
        else:
            target.write_bytes(data)
        return str(folder)

    def index_json(self, **changes: object) -> str:
        folder = self.index_copy()
        info = json.loads((folder / "index.json").read_text())
        info.update(changes)
        (folder / "index.json").write_text(json.dumps(info))
        return str(folder)

    def safetensors(self, name: str, metadata: dict[str, str] | None, **tensors) -> str:
        import torch
        from safetensors.torch import save_file

        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = tensors or {"w": torch.zeros(2)}
        save_file(tensors, str(path), metadata=metadata)
        return str(path)

    def checkpoint_meta(self, **changes: str) -> dict[str, str]:
        from safetensors import safe_open

        with safe_open(str(self.checkpoint), framework="pt") as fh:
            meta = dict(fh.metadata())
        return meta | changes

    def csv(self, name: str, header: str, *lines: str) -> str:
        return self.file(name, "\n".join([header, *lines]) + "\n")

    def cvg_tree(self, files: dict[str, str | bytes]) -> str:
        root = self.tmp / "cvg"
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.encode() if isinstance(data, str) else data)
        (root / "images").mkdir(parents=True, exist_ok=True)
        return str(root)

    def openclip_config(self, name: str = "cfg.json", **vision: object) -> str:
        cfg = json.loads(json.dumps(OPENCLIP_CFG))
        cfg["vision_cfg"].update(vision)
        return self.file(name, json.dumps({"model_cfg": cfg}))


RANDOM_BYTES = bytes(range(256)) * 8
PNG_HEADER_ONLY = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
CSV_HEADER = "id,text,sat_path,lat,lon,region,continent,split"


def csv_row(env: Env, **changes: str) -> str:
    row = {k: str(v) for k, v in env.row().items() if k in CSV_HEADER.split(",")}
    row |= changes
    return ",".join(json.dumps(row[k]) for k in CSV_HEADER.split(","))


def small_train(env: Env, *extra: str) -> list[str]:
    """A tiny run on a few real samples: refusals that need the data come after reading it."""
    data = env.manifest("small.jsonl", env.rows("train")[:8])
    return ["train", "--data", data, "--out", str(env.tmp / "run"), *tiny_settings(), *extra]


def tiny_train(env: Env, *extra: str) -> list[str]:
    """A train command whose data does not exist: a config error must be named before it."""
    missing = str(env.tmp / "no-data.jsonl")
    return ["train", "--data", missing, "--out", str(env.tmp / "run"), *extra]


def convert(env: Env, **given: str) -> list[str]:
    """convert-openclip with valid parts except those ``given``."""
    parts = {
        "checkpoint": given.get("checkpoint") or str(env.openclip / "open_clip_model.pt"),
        "config": given.get("config") or env.openclip_config(),
        "out": given.get("out") or str(env.tmp / "converted"),
        "tokenizer": given.get("tokenizer") or str(env.openclip / "tokenizer"),
    }
    return ["convert-openclip", *[a for k, v in parts.items() for a in (f"--{k}", v)]]


def torch_file(env: Env, name: str, obj: object) -> str:
    import torch

    path = env.tmp / name
    torch.save(obj, path)
    return str(path)


def zeros() -> object:
    import torch

    return torch.zeros(2)


def locate(env: Env, *extra: str, index: str | None = None) -> list[str]:
    return ["locate", "trees by a river", "--index", index or str(env.index), *extra]


def build(env: Env, *extra: str, stage: str = "sample") -> list[str]:
    """A build command with a valid config unless ``extra`` spoils it; stage ``sample`` is
    offline (it only picks points), so nothing is fetched even if a check were missing."""
    valid = ["--set", f"satellite.url={BAD_URL}", "--regions", "tokyo", "--per-region", "1"]
    return ["build", stage, "--out", str(env.tmp / "b"), *valid, *extra]


def literal(env: Env, **numbers: str) -> str:
    """A JSON row of the world whose numbers are written as given (``1e400``, ``NaN``)."""
    row = env.row(**{k: f"@{k}@" for k in numbers})
    text = json.dumps(row)
    for key, value in numbers.items():
        text = text.replace(f'"@{key}@"', value)
    return text


def cvg_name(lat: str = "40.7", lon: str = "-74.0") -> str:
    return f"{lat},{lon}_2020-01_pano123_d90_z19.jpg"


# Each case: id, how to build the argv (creating its bad input under env.tmp), and a fragment
# of the error line that names the bad thing.
Case = tuple[str, Callable[[Env], list[str]], str]

PARSER: list[Case] = [
    ("cli-no-command", lambda e: [], "COMMAND"),
    ("cli-unknown-command", lambda e: ["frobnicate"], "frobnicate"),
    ("regions-unknown-option", lambda e: ["regions", "--bogus"], "--bogus"),
    ("backbones-stray-argument", lambda e: ["backbones", "extra"], "extra"),
    ("cli-not-utf8-argument", lambda e: ["validate", NOT_UTF8], "argument 2"),
    ("regions-not-utf8-option-value", lambda e: ["regions", "--continent", NOT_UTF8], "argument 3"),
    ("regions-html-continent", lambda e: ["regions", "--continent", HTML], "script"),
    ("regions-unknown-continent", lambda e: ["regions", "--continent", "Atlantis"], "Atlantis"),
    ("regions-huge-continent", lambda e: ["regions", "--continent", "q" * HUGE], "qqqqqqqqqq"),
]

SYNTH: list[Case] = [
    ("synth-no-out", lambda e: ["synth"], "--out"),
    (
        "synth-regions-zero",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--regions", "0"],
        "--regions",
    ),
    (
        "synth-regions-negative",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--regions", "-3"],
        "--regions",
    ),
    (
        "synth-regions-word",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--regions", "many"],
        "--regions",
    ),
    (
        "synth-regions-too-many",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--regions", "300"],
        "--regions",
    ),
    (
        "synth-regions-float",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--regions", "2.5"],
        "--regions",
    ),
    (
        "synth-per-region-zero",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--per-region", "0"],
        "--per-region",
    ),
    ("synth-size-zero", lambda e: ["synth", "--out", str(e.tmp / "w"), "--size", "0"], "--size"),
    ("synth-size-tiny", lambda e: ["synth", "--out", str(e.tmp / "w"), "--size", "8"], "--size"),
    (
        "synth-size-huge",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--size", "9" * 400],
        "--size",
    ),
    (
        "synth-seed-negative",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--seed", "-1"],
        "--seed",
    ),
    (
        "synth-distractors-negative",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--distractors", "-5"],
        "--distractors",
    ),
    (
        "synth-spacing-nan",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--gallery-spacing", "nan"],
        "--gallery-spacing",
    ),
    (
        "synth-spacing-inf",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--gallery-spacing", "inf"],
        "--gallery-spacing",
    ),
    (
        "synth-spacing-1e400",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--gallery-spacing", "1e400"],
        "--gallery-spacing",
    ),
    (
        "synth-spacing-zero",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--gallery-spacing", "0"],
        "spacing",
    ),
    (
        "synth-extent-zero",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--extent", "0"],
        "extent",
    ),
    (
        "synth-extent-negative",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--extent", "-1e3"],
        "--extent",
    ),
    (
        "synth-extent-max-below",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--extent-max", "10"],
        "extent_max",
    ),
    (
        "synth-chunk-small",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--chunk-px", "8"],
        "chunk",
    ),
    (
        "synth-jpeg-quality",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--jpeg-quality", "200"],
        "--jpeg-quality",
    ),
    (
        "synth-shard-size-zero",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--shard-size", "0"],
        "--shard-size",
    ),
    ("synth-format", lambda e: ["synth", "--out", str(e.tmp / "w"), "--format", "csv"], "--format"),
    (
        "synth-preset",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--preset", "huge"],
        "--preset",
    ),
    (
        "synth-workers-zero",
        lambda e: ["synth", "--out", str(e.tmp / "w"), "--workers", "0"],
        "--workers",
    ),
    ("synth-out-is-file", lambda e: ["synth", "--out", e.file("afile.txt", "mine")], "afile.txt"),
    (
        "synth-out-dotdot-file",
        lambda e: ["synth", "--out", str(Path(e.folder("sub"), "..", e.file("afile.txt", "x")))],
        "afile.txt",
    ),
    (
        "synth-out-dotdot-file-through-missing-folder",
        lambda e: ["synth", "--out", e.file("afile.txt", "x").replace("afile", "nodir/../afile")],
        "afile.txt",
    ),
    (
        "synth-out-foreign-folder",
        lambda e: ["synth", "--out", str(Path(e.file("theirs/notes.txt", "keep")).parent)],
        "theirs",
    ),
    (
        "synth-out-garbage-stamp",
        lambda e: ["synth", "--out", str(Path(e.file("w/config.json", "{garbage")).parent)],
        "config.json",
    ),
    (
        "synth-out-list-stamp",
        lambda e: ["synth", "--out", str(Path(e.file("w/config.json", "[1, 2]")).parent)],
        "config.json",
    ),
    (
        "synth-out-other-world",
        lambda e: [
            "synth",
            "--out",
            str(Path(e.file("w/config.json", json.dumps({"seed": 99}))).parent),
        ],
        "other settings",
    ),
]

VALIDATE: list[Case] = [
    ("validate-missing", lambda e: ["validate", str(e.tmp / "missing.jsonl")], "missing.jsonl"),
    (
        "validate-dotdot-missing",
        lambda e: ["validate", str(e.tmp / "nowhere" / ".." / "missing.jsonl")],
        "missing.jsonl",
    ),
    ("validate-huge-path", lambda e: ["validate", "x" * HUGE], "xxxxxxxxxx"),
    ("validate-empty-file", lambda e: ["validate", e.file("empty.jsonl", "")], "empty.jsonl"),
    (
        "validate-blank-lines",
        lambda e: ["validate", e.file("blank.jsonl", "\n  \n\n")],
        "blank.jsonl",
    ),
    ("validate-empty-folder", lambda e: ["validate", e.folder("nothing")], "nothing"),
    ("validate-folder-named-jsonl", lambda e: ["validate", e.folder("m.jsonl")], "m.jsonl"),
    ("validate-wrong-suffix", lambda e: ["validate", e.file("m.csv", "a,b\n")], ".csv"),
    (
        "validate-bad-json",
        lambda e: ["validate", e.raw_rows("m.jsonl", json.dumps(e.row()), "{not json")],
        "line 2",
    ),
    ("validate-row-is-list", lambda e: ["validate", e.raw_rows("m.jsonl", "[1, 2, 3]")], "line 1"),
    ("validate-row-is-string", lambda e: ["validate", e.raw_rows("m.jsonl", '"a row"')], "line 1"),
    (
        "validate-row-is-null",
        lambda e: ["validate", e.raw_rows("m.jsonl", json.dumps(e.row()), "null")],
        "line 2",
    ),
    ("validate-not-utf8", lambda e: ["validate", e.file("m.jsonl", b'{"id": "\xff"}\n')], "line 1"),
    (
        "validate-lat-nan",
        lambda e: ["validate", e.raw_rows("m.jsonl", json.dumps(e.row(lat=float("nan"))))],
        "'lat'",
    ),
    (
        "validate-lat-1e400",
        lambda e: ["validate", e.raw_rows("m.jsonl", literal(e, lat="1e400"))],
        "'lat'",
    ),
    (
        "validate-lon-Infinity",
        lambda e: ["validate", e.raw_rows("m.jsonl", literal(e, lon="-Infinity"))],
        "'lon'",
    ),
    (
        "validate-lon-inf",
        lambda e: ["validate", e.raw_rows("m.jsonl", json.dumps(e.row(lon=float("inf"))))],
        "'lon'",
    ),
    ("validate-lat-out-of-range", lambda e: ["validate", e.one_row("m.jsonl", lat=-90.5)], "'lat'"),
    ("validate-lat-string", lambda e: ["validate", e.one_row("m.jsonl", lat="12.5")], "'lat'"),
    ("validate-lat-bool", lambda e: ["validate", e.one_row("m.jsonl", lat=True)], "'lat'"),
    ("validate-huge-int-lat", lambda e: ["validate", e.one_row("m.jsonl", lat=10**400)], "'lat'"),
    (
        "validate-missing-field",
        lambda e: ["validate", e.one_row("m.jsonl", region=None)],
        "'region'",
    ),
    (
        "validate-unknown-field",
        lambda e: ["validate", e.one_row("m.jsonl", colour="red")],
        "'colour'",
    ),
    ("validate-id-number", lambda e: ["validate", e.one_row("m.jsonl", id=7)], "'id'"),
    ("validate-id-blank", lambda e: ["validate", e.one_row("m.jsonl", id="   ")], "'id'"),
    (
        "validate-split-html",
        lambda e: ["validate", e.one_row("m.jsonl", split=HTML + "\n")],
        "'split'",
    ),
    ("validate-text-empty", lambda e: ["validate", e.one_row("m.jsonl", text=" \n ")], "'text'"),
    ("validate-meta-list", lambda e: ["validate", e.one_row("m.jsonl", meta=[1, 2])], "'meta'"),
    ("validate-meta-string", lambda e: ["validate", e.one_row("m.jsonl", meta="x")], "'meta'"),
    (
        "validate-street-number",
        lambda e: ["validate", e.one_row("m.jsonl", street_path=5)],
        "'street_path'",
    ),
    (
        "validate-duplicate-id",
        lambda e: ["validate", e.manifest("m.jsonl", [e.row(), e.row()])],
        "duplicate",
    ),
    (
        "validate-image-missing",
        lambda e: ["validate", e.one_row("m.jsonl", sat_path="nowhere.png")],
        "nowhere.png",
    ),
    (
        "validate-image-dotdot",
        lambda e: ["validate", e.one_row("m.jsonl", sat_path="../../../../etc/passwd")],
        "passwd",
    ),
    (
        "validate-image-garbage",
        lambda e: ["validate", e.one_row("m.jsonl", sat_path=e.file("bad.png", RANDOM_BYTES))],
        "bad.png",
    ),
    (
        "validate-image-truncated",
        lambda e: ["validate", e.one_row("m.jsonl", sat_path=e.file("cut.png", PNG_HEADER_ONLY))],
        "cut.png",
    ),
    (
        "validate-image-empty",
        lambda e: ["validate", e.one_row("m.jsonl", sat_path=e.file("zero.png", b""))],
        "zero.png",
    ),
    (
        "validate-image-is-folder",
        lambda e: ["validate", e.one_row("m.jsonl", sat_path=e.folder("adir.png"))],
        "adir.png",
    ),
    (
        "validate-on-bad-sample",
        lambda e: ["validate", e.one_row("m.jsonl"), "--on-bad-sample", "ignore"],
        "--on-bad-sample",
    ),
    (
        "validate-parquet-garbage",
        lambda e: ["validate", e.file("m.parquet", RANDOM_BYTES)],
        "m.parquet",
    ),
    ("validate-parquet-empty", lambda e: ["validate", e.file("m.parquet", b"")], "m.parquet"),
    (
        "validate-parquet-truncated",
        lambda e: ["validate", parquet(e, "m.parquet", cut=True)],
        "m.parquet",
    ),
    (
        "validate-parquet-missing-column",
        lambda e: ["validate", parquet(e, "m.parquet", drop="lat")],
        "'lat'",
    ),
    (
        "validate-parquet-lat-text",
        lambda e: ["validate", parquet(e, "m.parquet", lat="north")],
        "'lat'",
    ),
    (
        "validate-parquet-meta-garbage",
        lambda e: ["validate", parquet(e, "m.parquet", meta="{oops")],
        "'meta'",
    ),
]


def parquet(env: Env, name: str, *, cut: bool = False, drop: str | None = None, **values) -> str:
    """A one-row Parquet manifest of the world's first test row, spoiled as asked."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = env.row()
    row["meta"] = json.dumps(row["meta"])
    row |= values
    if drop:
        row.pop(drop)
    path = env.tmp / name
    pq.write_table(pa.table({k: [v] for k, v in row.items()}), path)
    if cut:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return str(path)


def table_import(env: Env, table: str, *extra: str) -> list[str]:
    return ["import", "table", table, "--out", str(env.tmp / "out" / "m.jsonl"), *extra]


IMPORT_TABLE: list[Case] = [
    ("table-missing", lambda e: table_import(e, str(e.tmp / "missing.csv")), "missing.csv"),
    ("table-is-folder", lambda e: table_import(e, e.folder("t.csv")), "t.csv"),
    ("table-wrong-suffix", lambda e: table_import(e, e.file("t.txt", "a\n")), ".txt"),
    ("table-empty-csv", lambda e: table_import(e, e.file("t.csv", "")), "t.csv"),
    ("table-header-only", lambda e: table_import(e, e.csv("t.csv", CSV_HEADER)), "t.csv"),
    (
        "table-lat-word",
        lambda e: table_import(e, e.csv("t.csv", CSV_HEADER, csv_row(e, lat="north"))),
        "'lat'",
    ),
    (
        "table-lat-nan",
        lambda e: table_import(e, e.csv("t.csv", CSV_HEADER, csv_row(e, lat="nan"))),
        "'lat'",
    ),
    (
        "table-lon-1e400",
        lambda e: table_import(e, e.csv("t.csv", CSV_HEADER, csv_row(e, lon="1e400"))),
        "'lon'",
    ),
    (
        "table-lat-200kb",
        lambda e: table_import(e, e.csv("t.csv", CSV_HEADER, csv_row(e, lat="9" * 200_000))),
        "'lat'",
    ),
    (
        "table-text-200kb-bad-split",
        lambda e: table_import(
            e, e.csv("t.csv", CSV_HEADER, csv_row(e, text="w" * 200_000, split="later"))
        ),
        "'split'",
    ),
    (
        "table-split-html",
        lambda e: table_import(e, e.csv("t.csv", CSV_HEADER, csv_row(e, split=HTML))),
        "'split'",
    ),
    (
        "table-unterminated-quote",
        lambda e: table_import(e, e.file("t.csv", CSV_HEADER + '\n"a,b,c\n')),
        "t.csv",
    ),
    (
        "table-csv-not-utf8",
        lambda e: table_import(e, e.file("t.csv", CSV_HEADER.encode() + b"\n\xff\xfe,x\n")),
        "t.csv",
    ),
    (
        "table-csv-nul",
        lambda e: table_import(e, e.file("t.csv", CSV_HEADER + "\n" + "\x00" * 3 + "\n")),
        "t.csv",
    ),
    (
        "table-jsonl-bad-json",
        lambda e: table_import(e, e.raw_rows("t.jsonl", json.dumps(e.row()), "{oops")),
        "line 2",
    ),
    ("table-jsonl-row-list", lambda e: table_import(e, e.raw_rows("t.jsonl", "[1]")), "line 1"),
    (
        "table-jsonl-row-number",
        lambda e: table_import(e, e.raw_rows("t.jsonl", json.dumps(e.row()), "42")),
        "line 2",
    ),
    (
        "table-json-document",
        lambda e: table_import(e, e.file("t.json", json.dumps([e.row()], indent=1))),
        "t.json",
    ),
    (
        "table-parquet-garbage",
        lambda e: table_import(e, e.file("t.parquet", RANDOM_BYTES)),
        "t.parquet",
    ),
    (
        "table-map-no-equals",
        lambda e: table_import(e, e.raw_rows("t.jsonl", json.dumps(e.row())), "--map", "text"),
        "text",
    ),
    (
        "table-map-unknown-field",
        lambda e: table_import(e, e.raw_rows("t.jsonl", json.dumps(e.row())), "--map", "colour=c"),
        "colour",
    ),
    (
        "table-set-no-equals",
        lambda e: table_import(
            e, e.raw_rows("t.jsonl", json.dumps(e.row(split=None))), "--set", "split"
        ),
        "split",
    ),
    (
        "table-set-html-split",
        lambda e: table_import(
            e, e.raw_rows("t.jsonl", json.dumps(e.row(split=None))), "--set", f"split={HTML}"
        ),
        "'split'",
    ),
    (
        "table-out-exists",
        lambda e: [
            "import",
            "table",
            e.raw_rows("t.jsonl", json.dumps(e.row())),
            "--out",
            e.file("have.jsonl", "precious\n"),
        ],
        "have.jsonl",
    ),
    (
        "table-out-dotdot-exists",
        lambda e: [
            "import",
            "table",
            e.raw_rows("t.jsonl", json.dumps(e.row())),
            "--out",
            e.file("have.jsonl", "precious\n").replace("have", "x/../have"),
        ],
        "have.jsonl",
    ),
    (
        "table-out-is-folder",
        lambda e: [
            "import",
            "table",
            e.raw_rows("t.jsonl", json.dumps(e.row())),
            "--out",
            e.folder("o.jsonl"),
        ],
        "o.jsonl",
    ),
    (
        "table-out-under-file",
        lambda e: [
            "import",
            "table",
            e.raw_rows("t.jsonl", json.dumps(e.row())),
            "--out",
            e.file("plain", "x") + "/m.jsonl",
        ],
        "plain",
    ),
    (
        "table-out-wrong-suffix",
        lambda e: [
            "import",
            "table",
            e.raw_rows("t.jsonl", json.dumps(e.row())),
            "--out",
            str(e.tmp / "m.csv"),
        ],
        "m.csv",
    ),
    (
        "table-image-root-missing",
        lambda e: table_import(
            e,
            e.raw_rows("t.jsonl", json.dumps(e.row(sat_path="a.png"))),
            "--image-root",
            str(e.tmp / "noimgs"),
        ),
        "a.png",
    ),
    (
        "table-on-bad-sample",
        lambda e: table_import(
            e, e.raw_rows("t.jsonl", json.dumps(e.row())), "--on-bad-sample", "maybe"
        ),
        "--on-bad-sample",
    ),
]


def cvg(env: Env, root: str, *extra: str) -> list[str]:
    return ["import", "cvgtext", root, "--out", str(env.tmp / "out" / "m.jsonl"), *extra]


IMPORT_CVG: list[Case] = [
    ("cvg-root-missing", lambda e: cvg(e, str(e.tmp / "nope")), "nope"),
    ("cvg-root-is-file", lambda e: cvg(e, e.file("root.txt", "x")), "root.txt"),
    (
        "cvg-no-annotations",
        lambda e: cvg(e, e.cvg_tree({"annotation/NewYork/.keep": ""})),
        "annotation",
    ),
    (
        "cvg-bad-json",
        lambda e: cvg(e, e.cvg_tree({"annotation/NewYork/train.json": "{oops"})),
        "train.json",
    ),
    (
        "cvg-json-list",
        lambda e: cvg(e, e.cvg_tree({"annotation/NewYork/train.json": "[1, 2]"})),
        "train.json",
    ),
    (
        "cvg-not-utf8",
        lambda e: cvg(e, e.cvg_tree({"annotation/NewYork/test.json": b"\xff\xfe{}"})),
        "test.json",
    ),
    (
        "cvg-bad-filename",
        lambda e: cvg(
            e, e.cvg_tree({"annotation/NewYork/train.json": json.dumps({"photo.jpg": "a street"})})
        ),
        "photo.jpg",
    ),
    (
        "cvg-unknown-split",
        lambda e: cvg(
            e, e.cvg_tree({"annotation/NewYork/holdout.json": json.dumps({cvg_name(): "a"})})
        ),
        "holdout.json",
    ),
    (
        "cvg-lat-out-of-range",
        lambda e: cvg(
            e,
            e.cvg_tree(
                {"annotation/NewYork/test.json": json.dumps({cvg_name(lat="95.0"): "a street"})}
            ),
        ),
        "'lat'",
    ),
    (
        "cvg-caption-number",
        lambda e: cvg(
            e, e.cvg_tree({"annotation/NewYork/test.json": json.dumps({cvg_name(): 12})})
        ),
        "'text'",
    ),
    (
        "cvg-city-absent",
        lambda e: cvg(e, e.cvg_tree({"annotation/NewYork/test.json": "{}"}), "--city", "Atlantis"),
        "Atlantis",
    ),
    ("cvg-view", lambda e: cvg(e, e.cvg_tree({}), "--view", "sideways"), "--view"),
    (
        "cvg-out-dotdot-exists",
        lambda e: [
            "import",
            "cvgtext",
            e.cvg_tree(
                {
                    "annotation/NewYork/test.json": json.dumps({cvg_name(): "a street"}),
                    f"images/NewYork/satellite/{cvg_name()}": e.tile_bytes(),
                }
            ),
            "--out",
            e.file("have.jsonl", "precious\n").replace("have", "x/../have"),
        ],
        "have.jsonl",
    ),
    (
        "cvg-out-exists",
        lambda e: [
            "import",
            "cvgtext",
            e.cvg_tree({}),
            "--out",
            e.file("have.jsonl", "precious\n"),
        ],
        "have.jsonl",
    ),
]


def baseline(env: Env, data: str, out: str | None = None) -> list[str]:
    return ["baseline", "--data", data, "--out", out or str(env.tmp / "res")]


MODEL: list[Case] = [
    ("baseline-data-missing", lambda e: baseline(e, str(e.tmp / "gone.jsonl")), "gone.jsonl"),
    ("baseline-data-empty-folder", lambda e: baseline(e, e.folder("emptyds")), "emptyds"),
    (
        "baseline-no-train-split",
        lambda e: baseline(e, e.manifest("m.jsonl", e.rows("test", "gallery"))),
        "train",
    ),
    (
        "baseline-no-test-split",
        lambda e: baseline(e, e.manifest("m.jsonl", e.rows("train"))),
        "test",
    ),
    (
        "baseline-out-is-file",
        lambda e: baseline(e, str(e.world.path), e.file("res.md", "mine")),
        "res.md",
    ),
    ("train-data-missing", lambda e: tiny_train(e), "no-data.jsonl"),
    (
        "train-no-train-split",
        lambda e: [
            "train",
            "--data",
            e.manifest("m.jsonl", e.rows("test", "gallery")),
            "--out",
            str(e.tmp / "run"),
            *tiny_settings(),
        ],
        "train",
    ),
    (
        "train-out-is-file",
        lambda e: ["train", "--data", str(e.world.path), "--out", e.file("run.txt", "x")],
        "run.txt",
    ),
    ("train-method", lambda e: tiny_train(e, "--method", "magic"), "--method"),
    ("train-query", lambda e: tiny_train(e, "--query", "smell"), "--query"),
    (
        "train-config-missing",
        lambda e: tiny_train(e, "--config", str(e.tmp / "none.yaml")),
        "none.yaml",
    ),
    ("train-config-folder", lambda e: tiny_train(e, "--config", e.folder("cfgdir")), "cfgdir"),
    (
        "train-config-bad-yaml",
        lambda e: tiny_train(e, "--config", e.file("c.yaml", "steps: [1, 2\n")),
        "c.yaml",
    ),
    ("train-set-bad-yaml", lambda e: tiny_train(e, "--set", "steps=[1,"), "steps"),
    (
        "train-config-not-utf8",
        lambda e: tiny_train(e, "--config", e.file("c.yaml", b"steps: \xff\n")),
        "c.yaml",
    ),
    (
        "train-config-list",
        lambda e: tiny_train(e, "--config", e.file("c.yaml", "- 1\n- 2\n")),
        "c.yaml",
    ),
    (
        "train-config-number-key",
        lambda e: tiny_train(e, "--config", e.file("c.yaml", "1: 2\n")),
        "1",
    ),
    (
        "train-config-model-scalar",
        lambda e: tiny_train(e, "--config", e.file("c.yaml", "model: 5\n")),
        "model",
    ),
    (
        "train-config-steps-nan",
        lambda e: tiny_train(e, "--config", e.file("c.yaml", "steps: .nan\n")),
        "steps",
    ),
    (
        "train-config-method",
        lambda e: tiny_train(e, "--config", e.file("c.yaml", "method: magic\n")),
        "magic",
    ),
    ("train-set-no-equals", lambda e: tiny_train(e, "--set", "steps"), "steps"),
    ("train-set-unknown", lambda e: tiny_train(e, "--set", "speed=11"), "speed"),
    ("train-set-steps-zero", lambda e: tiny_train(e, "--set", "steps=0"), "steps"),
    ("train-set-steps-negative", lambda e: tiny_train(e, "--set", "steps=-5"), "steps"),
    ("train-set-steps-fraction", lambda e: tiny_train(e, "--set", "steps=2.5"), "steps"),
    ("train-set-steps-huge", lambda e: tiny_train(e, "--set", "steps=1e400"), "steps"),
    ("train-set-lr-nan", lambda e: tiny_train(e, "--set", "lr=nan"), "lr"),
    ("train-set-lr-inf", lambda e: tiny_train(e, "--set", "lr=.inf"), "lr"),
    ("train-set-lr-negative", lambda e: tiny_train(e, "--set", "lr=-0.1"), "lr"),
    ("train-set-lr-word", lambda e: tiny_train(e, "--set", "lr=fast"), "lr"),
    ("train-set-batch-one", lambda e: tiny_train(e, "--set", "batch_size=1"), "batch_size"),
    ("train-set-embed-zero", lambda e: tiny_train(e, "--set", "model.embed_dim=0"), "embed_dim"),
    (
        "train-set-image-size-negative",
        lambda e: tiny_train(e, "--set", "model.image_size=-64"),
        "image_size",
    ),
    ("train-set-branches", lambda e: tiny_train(e, "--set", "branches=[1, 2]"), "branches"),
    ("train-set-amp", lambda e: tiny_train(e, "--set", "amp=fast"), "amp"),
    ("train-set-alt-prob", lambda e: tiny_train(e, "--set", "alt_text_prob=2"), "alt_text_prob"),
    (
        "train-set-informal-prob",
        lambda e: tiny_train(e, "--set", "informal_prob=-1"),
        "informal_prob",
    ),
    (
        "train-set-backbone",
        lambda e: small_train(e, "--set", "model.backbone=no-such-net"),
        "no-such-net",
    ),
    (
        "train-set-html-backbone",
        lambda e: small_train(e, "--set", f"model.backbone={HTML}"),
        "script",
    ),
    ("train-set-huge-value", lambda e: tiny_train(e, "--set", "amp=" + "z" * HUGE), "amp"),
    (
        "train-resume-garbage",
        lambda e: [
            "train",
            "--data",
            str(e.world.path),
            "--out",
            str(Path(e.file("run/checkpoint.safetensors", RANDOM_BYTES)).parent),
            "--resume",
            *tiny_settings(),
        ],
        "checkpoint.safetensors",
    ),
    ("evaluate-data-missing", lambda e: evaluate(e, data=str(e.tmp / "gone.jsonl")), "gone.jsonl"),
    (
        "evaluate-no-test-split",
        lambda e: evaluate(e, data=e.manifest("m.jsonl", e.rows("train", "val"))),
        "test",
    ),
    (
        "evaluate-checkpoint-missing",
        lambda e: evaluate(e, "--checkpoint", str(e.tmp / "nockpt")),
        "nockpt",
    ),
    (
        "evaluate-checkpoint-random",
        lambda e: evaluate(e, "--checkpoint", e.file("c.safetensors", RANDOM_BYTES)),
        "c.safetensors",
    ),
    (
        "evaluate-checkpoint-empty",
        lambda e: evaluate(e, "--checkpoint", e.file("c.safetensors", b"")),
        "c.safetensors",
    ),
    (
        "evaluate-checkpoint-truncated",
        lambda e: evaluate(
            e, "--checkpoint", e.file("c.safetensors", e.checkpoint.read_bytes()[:5000])
        ),
        "c.safetensors",
    ),
    (
        "evaluate-checkpoint-pickle",
        lambda e: evaluate(e, "--checkpoint", e.file("model.pt", pickle.dumps({"w": [1.0]}))),
        "model.pt",
    ),
    (
        "evaluate-checkpoint-pickle-renamed",
        lambda e: evaluate(
            e,
            "--checkpoint",
            e.file("run/checkpoint.safetensors", pickle.dumps({"w": [1.0]})).rsplit("/", 1)[0],
        ),
        "checkpoint.safetensors",
    ),
    (
        "evaluate-checkpoint-foreign-safetensors",
        lambda e: evaluate(
            e, "--checkpoint", e.safetensors("c.safetensors", {"producer": "someone"})
        ),
        "c.safetensors",
    ),
    (
        "evaluate-checkpoint-no-metadata",
        lambda e: evaluate(e, "--checkpoint", e.safetensors("c.safetensors", None)),
        "c.safetensors",
    ),
    (
        "evaluate-checkpoint-bad-header",
        lambda e: evaluate(
            e,
            "--checkpoint",
            e.safetensors("c.safetensors", e.checkpoint_meta(model_config="{oops")),
        ),
        "c.safetensors",
    ),
    (
        "evaluate-checkpoint-config-list",
        lambda e: evaluate(
            e, "--checkpoint", e.safetensors("c.safetensors", e.checkpoint_meta(model_config="[1]"))
        ),
        "c.safetensors",
    ),
    (
        "evaluate-checkpoint-wrong-tensors",
        lambda e: evaluate(e, "--checkpoint", e.safetensors("c.safetensors", e.checkpoint_meta())),
        "c.safetensors",
    ),
    (
        "evaluate-text-style-absent",
        lambda e: evaluate(e, "--text-style", "sonnet", data=e.few_tiles()),
        "sonnet",
    ),
    (
        "evaluate-image-query-on-text-model",
        lambda e: evaluate(e, "--query", "image", data=e.few_tiles()),
        "street images",
    ),
    ("evaluate-m-zero", lambda e: evaluate(e, "--m", "0"), "--m"),
    ("evaluate-m-negative", lambda e: evaluate(e, "--m", "-100"), "--m"),
    ("evaluate-alpha-nan", lambda e: evaluate(e, "--rerank-alpha", "nan"), "--rerank-alpha"),
    ("evaluate-alpha-inf", lambda e: evaluate(e, "--rerank-alpha", "-inf"), "--rerank-alpha"),
    ("evaluate-alpha-1e400", lambda e: evaluate(e, "--rerank-alpha", "1e400"), "--rerank-alpha"),
    ("evaluate-nearest", lambda e: evaluate(e, "--nearest", "closest"), "--nearest"),
    ("evaluate-joint-score", lambda e: evaluate(e, "--joint-score", "product"), "--joint-score"),
    (
        "evaluate-backbone",
        lambda e: evaluate(e, "--backbone", "no-such-net", data=str(e.world.path)),
        "no-such-net",
    ),
    ("evaluate-name-escapes", lambda e: evaluate(e, "--name", "../../escaped"), "--name"),
    (
        "evaluate-name-absolute-overwrites",
        lambda e: evaluate(
            e, "--name", e.file("victim.json", "{}").removesuffix(".json"), data=e.few_tiles()
        ),
        "--name",
    ),
    (
        "evaluate-out-is-file",
        lambda e: [
            "evaluate",
            "--data",
            str(e.world.path),
            "--out",
            e.file("res.txt", "x"),
            "--checkpoint",
            str(e.checkpoint),
        ],
        "res.txt",
    ),
    (
        "convert-checkpoint-missing",
        lambda e: convert(e, checkpoint=str(e.tmp / "none.pt")),
        "none.pt",
    ),
    (
        "convert-checkpoint-random",
        lambda e: convert(e, checkpoint=e.file("r.pt", RANDOM_BYTES)),
        "r.pt",
    ),
    (
        "convert-checkpoint-code-pickle",
        lambda e: convert(e, checkpoint=e.file("p.pt", pickle.dumps(Path("x")))),
        "p.pt",
    ),
    (
        "convert-checkpoint-not-openclip",
        lambda e: convert(e, checkpoint=torch_file(e, "w.pt", {"weight": zeros()})),
        "token_embedding",
    ),
    ("convert-checkpoint-is-folder", lambda e: convert(e, checkpoint=e.folder("ck.pt")), "ck.pt"),
    ("convert-config-missing", lambda e: convert(e, config=str(e.tmp / "none.json")), "none.json"),
    ("convert-config-garbage", lambda e: convert(e, config=e.file("c.json", "{oops")), "c.json"),
    ("convert-config-list", lambda e: convert(e, config=e.file("c.json", "[1, 2]")), "c.json"),
    (
        "convert-config-no-vision",
        lambda e: convert(e, config=e.file("c.json", json.dumps({"text_cfg": {}}))),
        "vision_cfg",
    ),
    (
        "convert-config-width-word",
        lambda e: convert(e, config=e.openclip_config(width="wide")),
        "config",
    ),
    (
        "convert-config-width-negative",
        lambda e: convert(e, config=e.openclip_config(width=-32)),
        "width",
    ),
    (
        "convert-config-patch-size-zero",
        lambda e: convert(e, config=e.openclip_config(patch_size=0)),
        "patch_size",
    ),
    (
        "convert-config-head-width-zero",
        lambda e: convert(e, config=e.openclip_config(head_width=0)),
        "head_width",
    ),
    (
        "convert-config-image-size-zero",
        lambda e: convert(e, config=e.openclip_config(image_size=0)),
        "image_size",
    ),
    ("convert-tokenizer-missing", lambda e: convert(e, tokenizer=str(e.tmp / "notok")), "notok"),
    (
        "convert-tokenizer-is-file",
        lambda e: convert(e, tokenizer=e.file("tok.json", "{}")),
        "tok.json",
    ),
    (
        "convert-tokenizer-empty-folder",
        lambda e: convert(e, tokenizer=e.folder("emptytok")),
        "emptytok",
    ),
    (
        "convert-out-not-empty",
        lambda e: convert(e, out=str(Path(e.file("used/keep.txt", "x")).parent)),
        "used",
    ),
    ("convert-out-is-file", lambda e: convert(e, out=e.file("o.txt", "x")), "o.txt"),
]


def tiny_settings() -> list[str]:
    """A tiny, quick training run, in case a refusal were ever missing."""
    from conftest import TINY_TRAIN

    return [a for k, v in TINY_TRAIN.items() for a in ("--set", f"{k}={v}")]


def evaluate(env: Env, *extra: str, data: str | None = None) -> list[str]:
    """An evaluate command whose data is missing unless given: argument errors come first."""
    data = data or str(env.tmp / "no-data.jsonl")
    args = ["evaluate", "--data", data, "--out", str(env.tmp / "res")]
    if "--checkpoint" not in extra and "--backbone" not in extra:
        args += ["--checkpoint", str(env.checkpoint)]
    return [*args, *extra]


def index_build(
    env: Env, *extra: str, splits: tuple[str, ...] = ("test",), **given: str
) -> list[str]:
    """index build over the world's test tiles, with valid parts except those ``given``."""
    parts = {
        "checkpoint": str(env.checkpoint),
        "gallery": str(env.world.path),
        "out": str(env.tmp / "idx"),
    } | given
    args = ["index", "build", *[a for k, v in parts.items() for a in (f"--{k}", v)]]
    return [*args, *[a for s in splits for a in ("--split", s)], *extra]


INDEX: list[Case] = [
    ("index-no-action", lambda e: ["index"], "ACTION"),
    ("index-device-unknown", lambda e: index_build(e, "--device", "warp9"), "warp9"),
    (
        "index-checkpoint-missing",
        lambda e: index_build(e, checkpoint=str(e.tmp / "none.safetensors")),
        "none.safetensors",
    ),
    (
        "index-checkpoint-random",
        lambda e: index_build(e, checkpoint=e.file("c.safetensors", RANDOM_BYTES)),
        "c.safetensors",
    ),
    (
        "index-checkpoint-pickle",
        lambda e: index_build(e, checkpoint=e.file("c.pth", pickle.dumps([1]))),
        "c.pth",
    ),
    (
        "index-checkpoint-foreign",
        lambda e: index_build(e, checkpoint=e.safetensors("c.safetensors", {"format": "pt"})),
        "c.safetensors",
    ),
    (
        "index-gallery-missing",
        lambda e: index_build(e, gallery=str(e.tmp / "nogal.jsonl")),
        "nogal.jsonl",
    ),
    ("index-gallery-empty", lambda e: index_build(e, gallery=e.file("g.jsonl", "")), "g.jsonl"),
    (
        "index-gallery-bad-row",
        lambda e: index_build(e, gallery=e.raw_rows("g.jsonl", json.dumps(e.row()), "[]")),
        "line 2",
    ),
    ("index-split-absent", lambda e: index_build(e, splits=("nosuch",)), "nosuch"),
    ("index-shard-size-zero", lambda e: index_build(e, "--shard-size", "0"), "--shard-size"),
    ("index-batch-size-negative", lambda e: index_build(e, "--batch-size", "-1"), "--batch-size"),
    ("index-tile-size-nan", lambda e: index_build(e, "--tile-size-m", "nan"), "--tile-size-m"),
    ("index-tile-size-1e400", lambda e: index_build(e, "--tile-size-m", "1e400"), "--tile-size-m"),
    ("index-tile-size-zero", lambda e: index_build(e, "--tile-size-m", "0"), "--tile-size-m"),
    ("index-tile-size-negative", lambda e: index_build(e, "--tile-size-m", "-5"), "--tile-size-m"),
    ("index-no-tile-size", lambda e: index_build(e, gallery=e.one_row("g.jsonl", meta={})), "tile"),
    ("index-kind", lambda e: index_build(e, "--kind", "tree"), "--kind"),
    ("index-dtype", lambda e: index_build(e, "--dtype", "float8"), "--dtype"),
    (
        "index-factory-garbage",
        lambda e: index_build(e, "--factory", "NoSuchIndex99", gallery=e.few_tiles()),
        "NoSuchIndex99",
    ),
    ("index-out-is-file", lambda e: index_build(e, out=e.file("idx.txt", "x")), "idx.txt"),
]

LOCATE: list[Case] = [
    ("locate-index-missing", lambda e: locate(e, index=str(e.tmp / "noidx")), "noidx"),
    ("locate-index-empty-folder", lambda e: locate(e, index=e.folder("emptyidx")), "emptyidx"),
    ("locate-index-is-file", lambda e: locate(e, index=e.file("idx.json", "{}")), "idx.json"),
    (
        "locate-index-html-path",
        lambda e: locate(e, index=str(e.tmp / HTML.replace("/", "_"))),
        "script",
    ),
    (
        "locate-index-json-garbage",
        lambda e: locate(e, index=e.damaged_index("index.json", "{garbage")),
        "index.json",
    ),
    (
        "locate-index-json-not-utf8",
        lambda e: locate(e, index=e.damaged_index("index.json", b"\xff\xfe")),
        "index.json",
    ),
    (
        "locate-index-json-list",
        lambda e: locate(e, index=e.damaged_index("index.json", "[]")),
        "index.json",
    ),
    ("locate-index-count-word", lambda e: locate(e, index=e.index_json(count="many")), "idx"),
    ("locate-index-count-wrong", lambda e: locate(e, index=e.index_json(count=3)), "idx"),
    ("locate-index-search-null", lambda e: locate(e, index=e.index_json(search=None)), "idx"),
    (
        "locate-index-search-unknown",
        lambda e: locate(e, index=e.index_json(search={"warp": 9})),
        "warp",
    ),
    (
        "locate-index-checkpoint-gone",
        lambda e: locate(e, index=e.index_json(checkpoint=str(e.tmp / "gone.safetensors"))),
        "gone.safetensors",
    ),
    (
        "locate-index-no-checkpoint",
        lambda e: locate(e, index=e.index_json(checkpoint=None)),
        "--checkpoint",
    ),
    (
        "locate-index-tile-size-nan",
        lambda e: locate(e, index=e.index_json(tile_size_m=float("nan"))),
        "tile",
    ),
    (
        "locate-index-tile-size-inf",
        lambda e: locate(e, "--json", index=e.index_json(tile_size_m=float("inf"))),
        "tile",
    ),
    (
        "locate-embeddings-garbage",
        lambda e: locate(e, index=e.damaged_index("embeddings.npy", RANDOM_BYTES)),
        "idx",
    ),
    (
        "locate-embeddings-missing",
        lambda e: locate(e, index=remove(e.index_copy(), "embeddings.npy")),
        "embeddings",
    ),
    (
        "locate-meta-garbage",
        lambda e: locate(e, index=e.damaged_index("meta.parquet", RANDOM_BYTES)),
        "idx",
    ),
    (
        "locate-faiss-missing",
        lambda e: locate(e, index=remove(e.index_copy(), "faiss.index")),
        "faiss.index",
    ),
    (
        "locate-checkpoint-random",
        lambda e: locate(e, "--checkpoint", e.file("c.safetensors", RANDOM_BYTES)),
        "c.safetensors",
    ),
    (
        "locate-checkpoint-pickle",
        lambda e: locate(e, "--checkpoint", e.file("c.pt", pickle.dumps({}))),
        "c.pt",
    ),
    (
        "locate-checkpoint-no-metadata",
        lambda e: locate(e, "--checkpoint", e.safetensors("c.safetensors", None)),
        "c.safetensors",
    ),
    (
        "locate-checkpoint-other-model",
        lambda e: locate(
            e,
            "--checkpoint",
            e.safetensors("c.safetensors", e.checkpoint_meta(fingerprint="0" * 32)),
        ),
        "another model",
    ),
    (
        "locate-checkpoint-wrong-tensors",
        lambda e: locate(e, "--checkpoint", e.safetensors("c.safetensors", e.checkpoint_meta())),
        "c.safetensors",
    ),
    ("locate-no-query", lambda e: ["locate", "--index", str(e.index)], "description"),
    ("locate-empty-text", lambda e: ["locate", "  ", "--index", str(e.index)], "description"),
    (
        "locate-huge-text",
        lambda e: ["locate", "trees " * (HUGE // 6), "--index", str(e.index)],
        "description",
    ),
    (
        "locate-not-utf8-text",
        lambda e: ["locate", "trees" + NOT_UTF8, "--index", str(e.index)],
        "argument 2",
    ),
    ("locate-k-zero", lambda e: locate(e, "-k", "0"), "-k"),
    ("locate-k-negative", lambda e: locate(e, "-k", "-1"), "-k"),
    ("locate-k-too-many", lambda e: locate(e, "-k", "101"), "k must be"),
    ("locate-near-one-number", lambda e: locate(e, "--near", "12"), "--near"),
    ("locate-near-word", lambda e: locate(e, "--near", "north,east"), "--near"),
    ("locate-near-nan", lambda e: locate(e, "--near", "nan,0"), "--near"),
    ("locate-near-1e400", lambda e: locate(e, "--near", "1e400,0"), "--near"),
    ("locate-near-html", lambda e: locate(e, "--near", HTML), "--near"),
    ("locate-near-out-of-range", lambda e: locate(e, "--near", "-91,0"), "prior point"),
    ("locate-near-lon-out-of-range", lambda e: locate(e, "--near", "10,-181"), "prior point"),
    ("locate-radius-without-near", lambda e: locate(e, "--radius-km", "5"), "near"),
    ("locate-radius-negative", lambda e: locate(e, "--near", "0,0", "--radius-km", "-5"), "radius"),
    (
        "locate-radius-inf",
        lambda e: locate(e, "--near", "0,0", "--radius-km", "inf"),
        "--radius-km",
    ),
    ("locate-nearest-zero", lambda e: locate(e, "--near", "0,0", "--nearest", "0"), "--nearest"),
    (
        "locate-nearest-huge",
        lambda e: locate(e, "--near", "0,0", "--nearest", "10000000"),
        "nearest",
    ),
    ("locate-nearest-without-near", lambda e: locate(e, "--nearest", "5"), "near"),
    ("locate-bbox-three", lambda e: locate(e, "--bbox", "1,2,3"), "--bbox"),
    (
        "locate-bbox-south-above-north",
        lambda e: locate(e, "--bbox", "-10,50,10,40"),
        "bounding box",
    ),
    ("locate-bbox-east-200", lambda e: locate(e, "--bbox", "0,0,200,10"), "bounding box"),
    ("locate-bbox-inf", lambda e: locate(e, "--bbox", "0,0,inf,10"), "--bbox"),
    ("locate-region-huge", lambda e: locate(e, "--region", "r" * HUGE), "region"),
    ("locate-heading-nan", lambda e: locate(e, "--heading", "nan"), "--heading"),
    ("locate-image-missing", lambda e: locate(e, "--image", str(e.tmp / "none.jpg")), "none.jpg"),
    ("locate-image-folder", lambda e: locate(e, "--image", e.folder("pic.jpg")), "pic.jpg"),
    ("locate-image-empty", lambda e: locate(e, "--image", e.file("pic.jpg", b"")), "image"),
    (
        "locate-image-to-text-model",
        lambda e: ["locate", "--index", str(e.index), "--image", e.file("pic.jpg", RANDOM_BYTES)],
        "descriptions only",
    ),
]


def remove(folder: Path, name: str) -> str:
    (folder / name).unlink()
    return str(folder)


def serve(env: Env, *extra: str, index: str | None = None) -> list[str]:
    return ["serve", "--index", index or str(env.tmp / "noidx"), *extra]


SERVE: list[Case] = [
    ("serve-no-index", lambda e: ["serve"], "--index"),
    ("serve-index-missing", lambda e: serve(e), "noidx"),
    (
        "serve-index-garbage",
        lambda e: serve(e, index=e.damaged_index("index.json", "{oops")),
        "index.json",
    ),
    ("serve-port-negative", lambda e: serve(e, "--port", "-1"), "--port"),
    ("serve-port-too-big", lambda e: serve(e, "--port", "70000"), "--port"),
    ("serve-port-word", lambda e: serve(e, "--port", "http"), "--port"),
    (
        "serve-basemap-scheme",
        lambda e: serve(e, "--basemap", "ftp://tiles.example.org/{z}/{x}/{y}.png"),
        "--basemap",
    ),
    (
        "serve-basemap-no-y",
        lambda e: serve(e, "--basemap", "https://tiles.example.org/{z}/{x}.png"),
        "--basemap",
    ),
    ("serve-basemap-html", lambda e: serve(e, "--basemap", HTML), "--basemap"),
    (
        "serve-basemap-huge",
        lambda e: serve(e, "--basemap", "https://t.example.org/{z}/{x}/{y}.png?" + "a" * HUGE),
        "--basemap",
    ),
    (
        "serve-checkpoint-random",
        lambda e: serve(
            e, "--checkpoint", e.file("c.safetensors", RANDOM_BYTES), index=str(e.index)
        ),
        "c.safetensors",
    ),
]

BUILD: list[Case] = [
    ("build-no-stage", lambda e: ["build", "--out", str(e.tmp / "b")], "stage"),
    ("build-unknown-stage", lambda e: ["build", "harvest", "--out", str(e.tmp / "b")], "harvest"),
    ("build-no-out", lambda e: ["build", "sample"], "--out"),
    ("build-no-url", lambda e: ["build", "sample", "--out", str(e.tmp / "b")], "satellite.url"),
    ("build-config-missing", lambda e: build(e, "--config", str(e.tmp / "none.yaml")), "none.yaml"),
    ("build-config-folder", lambda e: build(e, "--config", e.folder("conf")), "conf"),
    (
        "build-config-bad-yaml",
        lambda e: build(e, "--config", e.file("b.yaml", "sample: {regions: [\n")),
        "b.yaml",
    ),
    ("build-config-list", lambda e: build(e, "--config", e.file("b.yaml", "- sample\n")), "b.yaml"),
    (
        "build-config-section-scalar",
        lambda e: build(e, "--config", e.file("b.yaml", "sample: 5\n")),
        "sample",
    ),
    (
        "build-config-unknown-section",
        lambda e: build(e, "--config", e.file("b.yaml", "harvest: {a: 1}\n")),
        "harvest",
    ),
    (
        "build-config-unknown-key",
        lambda e: build(e, "--config", e.file("b.yaml", "sample: {speed: 1}\n")),
        "speed",
    ),
    (
        "build-config-number-key",
        lambda e: build(e, "--config", e.file("b.yaml", "sample: {1: 2}\n")),
        "sample.1",
    ),
    ("build-set-no-equals", lambda e: build(e, "--set", "satellite.zoom"), "satellite.zoom"),
    ("build-set-unknown", lambda e: build(e, "--set", "satellite.colour=red"), "satellite.colour"),
    ("build-set-zoom-range", lambda e: build(e, "--set", "satellite.zoom=40"), "satellite.zoom"),
    ("build-set-zoom-word", lambda e: build(e, "--set", "satellite.zoom=close"), "satellite.zoom"),
    (
        "build-set-pixels-zero",
        lambda e: build(e, "--set", "satellite.pixels=0"),
        "satellite.pixels",
    ),
    ("build-set-size-nan", lambda e: build(e, "--set", "satellite.size_m=.nan"), "size_m"),
    ("build-set-size-inf", lambda e: build(e, "--set", "satellite.size_m=.inf"), "size_m"),
    ("build-set-timeout-negative", lambda e: build(e, "--set", "http.timeout_s=-1.0"), "timeout_s"),
    (
        "build-set-spacing-negative",
        lambda e: build(e, "--set", "sample.min_spacing_m=-150.0"),
        "min_spacing_m",
    ),
    (
        "build-set-temperature-nan",
        lambda e: build(e, "--set", "describe.temperature=.nan"),
        "temperature",
    ),
    ("build-set-fraction-nan", lambda e: build(e, "--set", "write.val_fraction=.nan"), "fraction"),
    (
        "build-set-provider-html",
        lambda e: build(e, "--set", f"streetview.provider={HTML}"),
        "streetview.provider",
    ),
    (
        "build-set-quota-negative",
        lambda e: build(e, "--config", e.file("b.yaml", "sample: {quotas: {tokyo: -3}}\n")),
        "quotas",
    ),
    (
        "build-set-quota-unknown-region",
        lambda e: build(e, "--config", e.file("b.yaml", "sample: {quotas: {atlantis: 3}}\n")),
        "atlantis",
    ),
    ("build-regions-unknown", lambda e: build(e, "--regions", "atlantis"), "atlantis"),
    ("build-regions-huge", lambda e: build(e, "--regions", "x" * HUGE), "xxxxxxxxxx"),
    ("build-per-region-zero", lambda e: build(e, "--per-region", "0"), "--per-region"),
    ("build-workers-zero", lambda e: build(e, "--workers", "0"), "--workers"),
    ("build-engine", lambda e: build(e, "--engine", "spark"), "--engine"),
    (
        "build-out-is-file",
        lambda e: [
            "build",
            "sample",
            "--out",
            e.file("b.txt", "x"),
            "--set",
            f"satellite.url={BAD_URL}",
        ],
        "b.txt",
    ),
]

DEMO: list[Case] = [
    ("demo-steps-zero", lambda e: ["demo", "--out", str(e.tmp / "d"), "--steps", "0"], "--steps"),
    (
        "demo-steps-huge",
        lambda e: ["demo", "--out", str(e.tmp / "d"), "--steps", "1e400"],
        "--steps",
    ),
    ("demo-seed-negative", lambda e: ["demo", "--out", str(e.tmp / "d"), "--seed", "-1"], "--seed"),
    (
        "demo-workers-zero",
        lambda e: ["demo", "--out", str(e.tmp / "d"), "--workers", "0"],
        "--workers",
    ),
    ("demo-out-is-file", lambda e: ["demo", "--out", e.file("d.txt", "x")], "d.txt"),
    (
        "demo-out-foreign-world",
        lambda e: ["demo", "--out", str(Path(e.file("d/world/theirs.txt", "keep")).parent.parent)],
        "world",
    ),
]

CASES = (
    PARSER
    + SYNTH
    + VALIDATE
    + IMPORT_TABLE
    + IMPORT_CVG
    + MODEL
    + INDEX
    + LOCATE
    + SERVE
    + BUILD
    + DEMO
)


def openclip_state(cfg: dict) -> dict:
    """Random weights in open_clip's state-dict layout for the model config ``cfg``."""
    import torch

    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * 0.02

    def norm(prefix: str, width: int) -> dict:
        return {f"{prefix}.weight": torch.ones(width), f"{prefix}.bias": torch.zeros(width)}

    def blocks(prefix: str, width: int, layers: int) -> dict:
        out: dict = {}
        for i in range(layers):
            p = f"{prefix}{i}."
            out |= norm(p + "ln_1", width) | norm(p + "ln_2", width)
            out |= {
                p + "attn.in_proj_weight": rand(3 * width, width),
                p + "attn.in_proj_bias": torch.zeros(3 * width),
                p + "attn.out_proj.weight": rand(width, width),
                p + "attn.out_proj.bias": torch.zeros(width),
                p + "mlp.c_fc.weight": rand(4 * width, width),
                p + "mlp.c_fc.bias": torch.zeros(4 * width),
                p + "mlp.c_proj.weight": rand(width, 4 * width),
                p + "mlp.c_proj.bias": torch.zeros(width),
            }
        return out

    vision, text, embed = cfg["vision_cfg"], cfg["text_cfg"], cfg["embed_dim"]
    tw, vw, patch = text["width"], vision["width"], vision["patch_size"]
    grid = (vision["image_size"] // patch) ** 2
    state = {
        "token_embedding.weight": rand(text["vocab_size"], tw),
        "positional_embedding": rand(text["context_length"], tw),
        "text_projection": rand(tw, embed),
        "visual.class_embedding": rand(vw),
        "visual.positional_embedding": rand(grid + 1, vw),
        "visual.conv1.weight": rand(vw, 3, patch, patch),
        "visual.proj": rand(vw, embed),
        "logit_scale": torch.tensor(4.6),
    }
    state |= norm("ln_final", tw) | norm("visual.ln_pre", vw) | norm("visual.ln_post", vw)
    state |= blocks("transformer.resblocks.", tw, text["layers"])
    return state | blocks("visual.transformer.resblocks.", vw, vision["layers"])


@pytest.fixture(scope="module")
def openclip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid open_clip checkpoint of :data:`OPENCLIP_CFG` and a CLIP tokenizer beside it."""
    import torch

    from test_model import _write_clip_tokenizer

    folder = tmp_path_factory.mktemp("openclip")
    _write_clip_tokenizer(folder / "tokenizer")
    torch.save(openclip_state(OPENCLIP_CFG), folder / "open_clip_model.pt")
    return folder


@pytest.fixture
def env(
    tmp_path: Path,
    small_world: Manifest,
    tiny_checkpoint: Path,
    tiny_index: Path,
    openclip: Path,
) -> Env:
    return Env(tmp_path, small_world, tiny_checkpoint, tiny_index, openclip)


def snapshot(*roots: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``roots``: size, modification time and content digest."""
    state = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path)] = (info.st_size, info.st_mtime_ns, digest)
    return state


def watched(env: Env) -> list[Path]:
    """What a case could damage: its own folder, the shared index, checkpoint and manifest."""
    return [env.tmp, env.index, env.checkpoint.parent, env.world.path]


def assert_refused(code: int, out: str, err: str, names: str) -> None:
    lines = err.splitlines()
    shown = err if len(err) < 2000 else err[:1000] + " ... " + err[-1000:]
    assert "Traceback" not in out + err, shown
    assert code == 2, f"exit status {code}; stderr: {shown}"
    assert len(lines) == 1 and lines[0].strip(), f"stderr is not one line: {shown!r}"
    assert names in lines[0], f"{names!r} not named in: {shown}"


# The command each case id's first word stands for ("cli": the top-level parser).
COMMANDS = {
    "cli": "",
    "synth": "synth",
    "validate": "validate",
    "cvg": "import cvgtext",
    "table": "import table",
    "regions": "regions",
    "baseline": "baseline",
    "train": "train",
    "evaluate": "evaluate",
    "convert": "convert-openclip",
    "backbones": "backbones",
    "index": "index build",
    "locate": "locate",
    "serve": "serve",
    "build": "build",
    "demo": "demo",
}


@pytest.mark.parametrize(
    ("make", "names", "command"),
    [pytest.param(make, names, COMMANDS[i.split("-")[0]], id=i) for i, make, names in CASES],
)
def test_bad_input_is_refused_with_one_line(
    make: Callable[[Env], list[str]], names: str, command: str, env: Env, capsys
) -> None:
    argv = make(env)
    assert argv[: len(command.split())] == command.split()[: len(argv)]
    capsys.readouterr()
    before = snapshot(*watched(env))
    code = main(argv)
    out, err = capsys.readouterr()
    after = snapshot(*watched(env))
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert not changed, f"existing files changed (exit status {code}): {changed}"
    assert_refused(code, out, err, names)


def leaf_commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> set[str]:
    """Every runnable command of ``parser``, e.g. ``import table``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: set[str] = set()
            for name, sub in action.choices.items():
                found |= leaf_commands(sub, (*words, name))
            return found
    return {" ".join(words)}


def test_every_subcommand_has_bad_input_cases() -> None:
    from planetloc.cli import build_parser

    covered = {COMMANDS[i.split("-")[0]] for i, _, _ in CASES}
    assert leaf_commands(build_parser()) <= covered
    assert len({i for i, _, _ in CASES}) == len(CASES)  # ids are unique


# --------------------------------------------------------------------------- accepted inputs
def test_convert_control_is_accepted(env: Env, capsys) -> None:
    """The parts the convert cases spoil one at a time are valid together."""
    assert main(convert(env)) == 0, capsys.readouterr().err
    assert (env.tmp / "converted" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("prior", "recorded"),
    [
        (["--near", "-34.6,-58.4", "--radius-km", "20000"], {"near": [-34.6, -58.4]}),
        (["--near=-34.6,-58.4", "--nearest", "3"], {"near": [-34.6, -58.4], "nearest": 3}),
        (["--bbox", "-180,-90,180,90"], {"bbox": [-180.0, -90.0, 180.0, 90.0]}),
        (
            ["--near", "-34.6,-58.4", "--bbox", "-170,-80,170,80"],
            {"near": [-34.6, -58.4], "bbox": [-170.0, -80.0, 170.0, 80.0]},
        ),
    ],
    ids=["near-negative", "near-equals", "bbox-negative", "near-and-bbox"],
)
def test_negative_coordinates_are_values_not_options(
    prior: list[str], recorded: dict, tiny_index: Path, capsys
) -> None:
    code = main(["locate", "trees by a river", "--index", str(tiny_index), "--json", *prior])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert {k: result["prior"][k] for k in recorded} == recorded
    assert len(result["tiles"]) >= 1


# --------------------------------------------------------------------------- real processes
def run_cli(*args: str | bytes, **kwargs) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "planetloc.cli", *args],
        capture_output=True,
        timeout=120,
        env=env,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ((b"validate", b"\xff"), b"argument 2"),
        ((b"locate", b"caf\xe9", b"--index", b"nowhere"), b"argument 2"),
        ((b"synth", b"--out", b"w", b"--size", b"8"), b"--size"),
        ((b"validate", b"x" * HUGE), b"xxxxxxxxxx"),
    ],
    ids=["not-utf8-path", "latin1-text", "synth-config", "huge-path"],
)
def test_process_refusals_have_no_traceback(
    args: tuple[bytes, ...], names: bytes, tmp_path: Path
) -> None:
    done = run_cli(*args, cwd=tmp_path)
    assert b"Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and names in lines[0], done.stderr[-2000:]


def test_damaged_faiss_file_is_refused_in_its_own_process(tiny_index: Path, tmp_path: Path) -> None:
    """A garbage FAISS file must not crash the reader (run apart: a crash would kill pytest)."""
    import shutil

    folder = Path(shutil.copytree(tiny_index, tmp_path / "idx"))
    for data in (
        RANDOM_BYTES,
        b"IxFI" + RANDOM_BYTES,
    ):  # garbage; a flat index's magic, then garbage
        (folder / "faiss.index").write_bytes(data)
        done = run_cli("locate", "trees", "--index", str(folder))
        assert b"Traceback" not in done.stderr, done.stderr[-2000:]
        assert done.returncode == 2, done.stderr[-2000:]
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and b"faiss.index" in lines[0], done.stderr[-2000:]


@pytest.mark.parametrize(
    "args",
    [["regions"], ["regions", "--json"], ["regions", "--continent", "Oceania"], ["backbones"]],
    ids=["table", "json", "short", "backbones"],
)
def test_closed_pipe_is_a_quiet_exit(args: list[str], tmp_path: Path) -> None:
    """``planetloc regions | head -1``: the reader leaving early is not an error."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "planetloc.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command has written anything: every write fails
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    assert err == b"", err


def test_head_one_through_a_shell(tmp_path: Path) -> None:
    script = f'"{sys.executable}" -m planetloc.cli regions | head -1; exit "${{PIPESTATUS[0]}}"'
    done = subprocess.run(["bash", "-c", script], capture_output=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    assert len(done.stdout.splitlines()) == 1
