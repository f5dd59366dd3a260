"""The ``planetloc`` command line: parse, call the library, print. One subcommand per job.

Bad input of any kind ends with one line on stderr naming the bad thing and exit status 2;
nothing here holds logic the library does not expose.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from planetloc import __version__
from planetloc.errors import PlanetlocError

# Options whose values may start with "-" (negative coordinates): joined to their value
# before argparse sees them, which would otherwise take "-34.6,-58.4" for an option.
SIGNED_VALUE_OPTIONS = ("--near", "--bbox", "--heading")


class UsageError(PlanetlocError):
    """A command line argparse refused; its text is the whole one-line message."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the bad argument (then exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {' '.join(message.split())} (see --help)")


# --------------------------------------------------------------------------- argument types
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def numbers(count: int, what: str):
    def parse(text: str) -> tuple[float, ...]:
        parts = text.split(",")
        if len(parts) != count:
            raise argparse.ArgumentTypeError(f"{what} must be {count} comma-separated numbers")
        try:
            values = tuple(finite_float(p) for p in parts)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"{what} must be {count} comma-separated finite numbers, got {text!r}"
            ) from None
        return values

    return parse


def output_folder(path: str | Path) -> Path:
    """An --out folder: may exist (to resume), must not be a file (nor lie under one)."""
    p = Path(path)
    resolved = p.resolve()
    if resolved.exists() and not resolved.is_dir():
        raise PlanetlocError(f"{p}: --out must be a folder, and this is a file")
    for parent in resolved.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PlanetlocError(f"{p}: {parent} is a file, not a folder")
            break
    return resolved


def port_number(text: str) -> int:
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 0-65535, got {value}")
    return value


# --------------------------------------------------------------------------- data commands
SYNTH_OPTIONS = {
    "regions": "regions",
    "per_region": "per_region",
    "size": "size",
    "seed": "seed",
    "difficulty": "difficulty",
    "distractors": "distractors",
    "format": "format",
    "shards": "shards",
    "shard_size": "shard_size",
    "image_format": "image_format",
    "jpeg_quality": "jpeg_quality",
    "gallery_spacing": "gallery_spacing_m",
    "extent": "extent_m",
    "extent_max": "extent_max_m",
    "chunk_px": "chunk_px",
    "street_views": "street_views",
    "train_all_styles": "train_all_styles",
}


def _cmd_synth(args: argparse.Namespace) -> int:
    from planetloc.data.synth.config import preset_config
    from planetloc.workflows.demo import synthesise

    overrides = {
        field: getattr(args, name)
        for name, field in SYNTH_OPTIONS.items()
        if getattr(args, name) is not None
    }
    if args.gallery_anywhere:
        overrides["gallery_on_streets"] = False
    synthesise(preset_config(args.preset, **overrides), output_folder(args.out), args.workers)
    return 0


def _report_skips(manifest) -> None:
    from planetloc.data.manifest import skip_report

    print(skip_report(manifest))
    for bad in manifest.skipped:
        print(f"  skipped row {bad.row} (id={bad.id}): {bad.reason}", file=sys.stderr)


def _cmd_validate(args: argparse.Namespace) -> int:
    from planetloc.data.manifest import find_manifest, read_manifest, split_counts

    manifest = read_manifest(
        find_manifest(args.manifest),
        on_bad_sample=args.on_bad_sample,
        check_images=not args.no_image_check,
    )
    _report_skips(manifest)
    print(f"ok: {len(manifest.samples)} valid samples by split {split_counts(manifest.samples)}")
    return 0


def _cmd_import_cvgtext(args: argparse.Namespace) -> int:
    from planetloc.data.importers.cvgtext import import_cvgtext
    from planetloc.data.manifest import build_manifest, refuse_overwrite

    out = refuse_overwrite(Path(args.out))
    samples = import_cvgtext(args.root, manifest_dir=out.parent, cities=args.city, view=args.view)
    manifest = build_manifest((s.to_dict() for s in samples), out, on_bad_sample=args.on_bad_sample)
    _report_skips(manifest)
    return 0


def _cmd_import_table(args: argparse.Namespace) -> int:
    from planetloc.data.importers.table import import_table, parse_mapping
    from planetloc.data.manifest import build_manifest, refuse_overwrite

    out = refuse_overwrite(Path(args.out))
    where, records = import_table(
        args.table,
        manifest_dir=out.parent,
        mapping=parse_mapping(args.map),
        image_root=args.image_root,
        defaults=parse_mapping(args.set, values=True) if args.set else {},
    )
    manifest = build_manifest(
        records, out, on_bad_sample=args.on_bad_sample, source=Path(args.table), where=where
    )
    _report_skips(manifest)
    return 0


def _cmd_regions(args: argparse.Namespace) -> int:
    from planetloc.geo.regions import catalog_rows

    rows = catalog_rows(args.continent)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        print(
            f"{r['slug']:32s} {r['name']:28s} {r['country']:24s} {r['continent']:14s} "
            f"{r['lat']:9.4f} {r['lon']:9.4f}"
        )
    return 0


# --------------------------------------------------------------------------- model commands
def _cmd_baseline(args: argparse.Namespace) -> int:
    from planetloc.workflows.baseline import run_baseline

    _, table = run_baseline(args.data, output_folder(args.out))
    print(table)
    print(f"results in {args.out}/baseline.json, baseline.md, baseline_examples.png")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from planetloc.train.config import load_config
    from planetloc.train.trainer import train
    from planetloc.yaml_config import parse_overrides

    overrides = parse_overrides(args.set)
    overrides["data"] = args.data
    overrides["out"] = str(output_folder(args.out))
    if args.query:
        overrides["model.query"] = args.query
    cfg = load_config(args.config, method=args.method, overrides=overrides)
    summary = train(cfg, resume=args.resume)
    last = next((r for r in reversed(summary["history"]) if "loss" in r), None)
    loss = f"last loss {last['loss']:.4f}; " if last else ""
    steps, where = summary["steps"], summary["checkpoint"]
    print(f"trained {cfg.method} for {steps} steps; {loss}checkpoint {where}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from planetloc.eval.report import check_name, comparison_table
    from planetloc.workflows.evaluation import run_evaluation

    try:
        check_name(args.name)
    except PlanetlocError as err:
        raise PlanetlocError(f"--name: {err}") from None

    report = run_evaluation(
        args.data,
        str(output_folder(args.out)),
        name=args.name,
        checkpoint=args.checkpoint,
        backbone=args.backbone,
        m=args.m,
        nearest=args.nearest,
        rerank_alpha=args.rerank_alpha,
        query=args.query,
        joint_score=args.joint_score,
        text_style=args.text_style,
        text_cache=args.text_cache,
    )
    print(comparison_table({args.name: report}))
    rerank = report["protocol"]["rerank"]
    cut = report["truncated_fraction"]
    cut_text = f"truncated queries: {100 * cut:.1f}%; " if cut is not None else ""
    print(
        f"{cut_text}re-ranking alpha {rerank['alpha']} ({rerank['source']}); "
        f"results in {args.out}/{args.name}.json"
    )
    return 0


def _cmd_convert_openclip(args: argparse.Namespace) -> int:
    from planetloc.model.openclip import convert_to_folder

    out = convert_to_folder(args.checkpoint, args.config, output_folder(args.out), args.tokenizer)
    print(
        f"wrote a self-contained CLIP folder (weights, config, tokenizer, image settings) to "
        f"{out}; train with --set model.backbone=openclip --set model.text_source={out}"
    )
    return 0


def _cmd_backbones(args: argparse.Namespace) -> int:
    from planetloc.model.registry import BACKBONES

    for name, spec in sorted(BACKBONES.items()):
        print(f"{name:18s} {spec['description']}")
    return 0


# --------------------------------------------------------------------------- index commands
def _cmd_index_build(args: argparse.Namespace) -> int:
    from planetloc.workflows.indexing import build_gallery_index

    info = build_gallery_index(
        checkpoint=args.checkpoint,
        gallery=args.gallery,
        out=output_folder(args.out),
        kind=args.kind,
        factory=args.factory,
        dtype=args.dtype,
        splits=tuple(args.split) if args.split else None,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        tile_size_m=args.tile_size_m,
        device=args.device,
    )
    print(
        f"indexed {info['count']} tiles ({info['search']['factory']}, {info['dtype']}, "
        f"{info['tile_size_m']} m tiles; {info['shards']['reused']} of "
        f"{info['shards']['count']} shards reused) in {args.out}"
    )
    return 0


def _query(args: argparse.Namespace):
    from planetloc.index.locate import Query
    from planetloc.index.priors import Prior

    prior = Prior(
        bbox=args.bbox,
        near=args.near,
        radius_km=args.radius_km,
        nearest=args.nearest,
        regions=tuple(args.region or ()),
    )
    image = None
    if args.image:
        from planetloc.data.images import read_image_bytes

        image = read_image_bytes(args.image)
    return Query(
        text=args.text,
        image=image,
        heading_deg=args.heading,
        k=args.k,
        prior=None if prior.empty else prior,
    )


def _cmd_locate(args: argparse.Namespace) -> int:
    from planetloc.index.locate import Locator

    locator = Locator.open(args.index, checkpoint=args.checkpoint)
    result = locator.locate(_query(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, allow_nan=False))
        return 0
    for rank, hit in enumerate(result.tiles, start=1):
        phys = " ".join(f"{k} {v:+.2f}" for k, v in hit.physics.items())
        print(
            f"#{rank} {hit.lat:.6f}, {hit.lon:.6f}  {hit.region:24s} "
            f"score {hit.score:.3f}  ({phys})  {hit.id}"
        )
    if result.truncated:
        print("note: the description is longer than the model reads; its end was not used")
    if result.estimate:
        e = result.estimate
        print(f"estimate: {e.lat:.6f}, {e.lon:.6f} +- {e.radius_m:.0f} m")
    else:
        print("no tile satisfies the prior")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from planetloc.serve.app import serve

    serve(
        args.index,
        host=args.host,
        port=args.port,
        checkpoint=args.checkpoint,
        basemap=args.basemap,
    )
    return 0


# --------------------------------------------------------------------------- jobs
def _cmd_build(args: argparse.Namespace) -> int:
    from planetloc.builder.config import load_build_config
    from planetloc.builder.engine import run_logged_build, stages_for
    from planetloc.builder.report import format_report
    from planetloc.yaml_config import parse_overrides

    overrides = parse_overrides(args.set)
    if args.regions:
        overrides["sample.regions"] = args.regions
    if args.per_region is not None:
        overrides["sample.per_region"] = args.per_region
    cfg = load_build_config(args.config, overrides)
    out = output_folder(args.out)
    report = run_logged_build(
        cfg,
        out,
        stages_for(args.stage),
        verbose=args.verbose,
        engine=args.engine,
        workers=args.workers,
        address=args.address,
        retry_quarantined=args.retry_quarantined,
        allow_partial=args.allow_partial,
    )
    print(format_report(report, out / "report.json"))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from planetloc.workflows.demo import run_demo

    run_demo(
        output_folder(args.out),
        seed=args.seed,
        steps=args.steps,
        workers=args.workers,
        amp=args.amp,
    )
    return 0


# --------------------------------------------------------------------------- the parser
def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="generate a SynthCORE world (tiles, street views, descriptions, manifest)",
        description="Options left out take the preset's value (see --preset).",
    )
    p.add_argument(
        "--out", required=True, help="output folder (resumes if it holds the same world)"
    )
    p.add_argument(
        "--preset",
        choices=("default", "dense", "xl"),
        default="default",
        help="default: 24 regions x 220 samples; dense: 12 regions with 2000 gallery tiles "
        "each (m-nearest sets are neighbourhoods); xl: all 225 regions, 100k described "
        "samples and ~1M gallery tiles in JPEG shards",
    )
    p.add_argument("--regions", type=positive_int, help="regions, 1-225")
    p.add_argument("--per-region", type=positive_int, help="described samples per region")
    p.add_argument("--size", type=positive_int, help="tile size in pixels")
    p.add_argument("--seed", type=non_negative_int, help="world seed")
    p.add_argument("--difficulty", choices=("easy", "medium", "hard"))
    p.add_argument(
        "--distractors",
        "--gallery-per-region",
        dest="distractors",
        type=non_negative_int,
        help="gallery-only tiles per region",
    )
    p.add_argument(
        "--gallery-anywhere",
        action="store_true",
        help="gallery tiles anywhere in the region, not only on streets",
    )
    p.add_argument("--gallery-spacing", type=finite_float, help="metres between gallery tiles")
    p.add_argument("--extent", type=finite_float, help="region side in metres (smallest cities)")
    p.add_argument("--extent-max", type=finite_float, help="region side for the largest cities")
    p.add_argument("--chunk-px", type=positive_int, help="side of the map chunks computed at once")
    p.add_argument("--format", choices=("jsonl", "parquet"), help="manifest format")
    p.add_argument(
        "--shards",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write WebDataset shards instead of one file per tile",
    )
    p.add_argument("--shard-size", type=positive_int, help="samples per shard")
    p.add_argument("--image-format", choices=("png", "jpg"), help="tile encoding")
    p.add_argument("--jpeg-quality", type=positive_int, help="JPEG quality, 1-95")
    p.add_argument(
        "--street-views",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="render a street-level panorama per described sample (default: on)",
    )
    p.add_argument(
        "--train-all-styles",
        action="store_true",
        default=None,
        help="train on the held-out description style too (default: it is held out)",
    )
    p.add_argument("--workers", type=positive_int, default=1, help="parallel processes")
    p.set_defaults(func=_cmd_synth)


def _add_data(sub) -> None:
    p = sub.add_parser("validate", help="check a manifest and its images")
    p.add_argument("manifest", help="manifest .jsonl or .parquet, or a folder holding one")
    p.add_argument("--on-bad-sample", choices=("fail", "skip"), default="fail")
    p.add_argument("--no-image-check", action="store_true", help="skip decoding every image")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("import", help="convert another dataset layout into a manifest")
    isub = p.add_subparsers(dest="source", required=True, metavar="SOURCE")
    q = isub.add_parser(
        "cvgtext", help="a CVG-Text tree (annotation/<City>/<split>.json, images/<City>/...)"
    )
    q.add_argument("root", help="CVG-Text root folder")
    q.add_argument("--out", required=True, help="manifest to write (.jsonl or .parquet)")
    q.add_argument("--city", action="append", help="import only this city (repeatable)")
    q.add_argument(
        "--view",
        choices=("panorama", "single"),
        default="panorama",
        help="view type when the annotation path does not say",
    )
    q.add_argument("--on-bad-sample", choices=("fail", "skip"), default="fail")
    q.set_defaults(func=_cmd_import_cvgtext)
    q = isub.add_parser("table", help="a CSV, JSONL or Parquet table with a column mapping")
    q.add_argument("table", help="input table")
    q.add_argument("--out", required=True, help="manifest to write (.jsonl or .parquet)")
    q.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="schema field taken from a differently named column (repeatable)",
    )
    q.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="value for a field the table lacks, e.g. split=test (repeatable)",
    )
    q.add_argument("--image-root", help="folder image paths are relative to (default: the table's)")
    q.add_argument("--on-bad-sample", choices=("fail", "skip"), default="fail")
    q.set_defaults(func=_cmd_import_table)

    p = sub.add_parser("regions", help="list the 225-region catalog")
    p.add_argument("--continent", help="only this continent")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_regions)


def _add_model(sub) -> None:
    p = sub.add_parser("baseline", help="fit and evaluate the text-to-signature baseline")
    p.add_argument("--data", required=True, help="manifest (.jsonl, .parquet) or its folder")
    p.add_argument("--out", required=True, help="folder for baseline.json/.md/_examples.png")
    p.set_defaults(func=_cmd_baseline)

    p = sub.add_parser("train", help="train PLANET or a baseline recipe (torchrun for DDP)")
    p.add_argument(
        "--data",
        required=True,
        help="a manifest, a dataset folder (its shards/ or webdataset/ tars are streamed when "
        "present), or a shard pattern such as 'data/shards/train-{000000..000099}.tar'",
    )
    p.add_argument(
        "--out", required=True, help="run folder: checkpoint.safetensors, metrics.jsonl, summary"
    )
    p.add_argument(
        "--method",
        choices=("planet", "itc-long", "itc-77"),
        help="planet (L_itc + lambda L_phy, 248 tokens); itc-long (L_itc only, 248 tokens); "
        "itc-77 (L_itc only, text cut at 77 tokens). The backbone is model.backbone.",
    )
    p.add_argument(
        "--query",
        choices=("text", "image", "joint"),
        help="what queries the model learns: descriptions (default), street images, or both",
    )
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. steps=800 or model.backbone=clip-vit-b32 (repeatable)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out exactly where it stopped"
    )
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on every set, both protocols")
    p.add_argument("--data", required=True, help="manifest (.jsonl, .parquet) or its folder")
    p.add_argument(
        "--checkpoint", help="a run folder or its checkpoint.safetensors; omit for zero-shot"
    )
    p.add_argument("--backbone", default="minilm-cnn", help="backbone of the zero-shot model")
    p.add_argument("--out", required=True, help="folder for <name>.json/.md and pictures")
    p.add_argument("--name", default="eval", help="file name stem (default eval)")
    p.add_argument(
        "--m", type=positive_int, default=100, help="tiles per query in the m-nearest protocol"
    )
    p.add_argument(
        "--nearest",
        choices=("planetloc", "cvg-text"),
        default="planetloc",
        help="m-nearest rule: planetloc's, or CVG-Text's cal_score reproduced exactly",
    )
    p.add_argument(
        "--rerank-alpha",
        type=finite_float,
        default=None,
        help="re-rank the top 50 by s + alpha * physical agreement (default: the weight the "
        "run chose on its val split, or 0)",
    )
    p.add_argument("--query", choices=("text", "image", "joint"), help="query kind to evaluate")
    p.add_argument(
        "--joint-score", choices=("projection", "mean", "sum"), help="how joint queries score"
    )
    p.add_argument(
        "--text-style", help="query with the samples' phrasing in this style (meta.alt_texts)"
    )
    p.add_argument(
        "--text-cache",
        default="auto",
        help="where a frozen text trunk's query features are kept: auto (beside the data, "
        "shared by every model with that trunk), off, or a folder",
    )
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "convert-openclip",
        help="turn an open_clip ViT checkpoint into a self-contained transformers CLIP folder",
    )
    p.add_argument(
        "--checkpoint", required=True, help="open_clip .pt/.bin state dict (RemoteCLIP, GeoRSCLIP)"
    )
    p.add_argument("--config", required=True, help="open_clip_config.json (or a model_cfg JSON)")
    p.add_argument("--out", required=True, help="output folder (save_pretrained layout)")
    p.add_argument(
        "--tokenizer",
        required=True,
        help="folder of the CLIP BPE tokenizer to copy alongside (open_clip checkpoints carry "
        "none), e.g. a saved openai/clip-vit-base-patch32 tokenizer",
    )
    p.set_defaults(func=_cmd_convert_openclip)

    p = sub.add_parser("backbones", help="list the named backbones")
    p.set_defaults(func=_cmd_backbones)


def _add_index(sub) -> None:
    p = sub.add_parser("index", help="build a searchable gallery index")
    isub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = isub.add_parser("build", help="encode gallery tiles (resumable) and build a FAISS index")
    q.add_argument("--checkpoint", required=True, help="a trained run (folder or .safetensors)")
    q.add_argument("--gallery", required=True, help="manifest (or folder) of the gallery tiles")
    q.add_argument("--out", required=True, help="index folder")
    q.add_argument(
        "--kind",
        choices=("flat", "hnsw", "ivfpq"),
        default="flat",
        help="flat: exact inner product (default); hnsw, ivfpq: approximate, for large galleries",
    )
    q.add_argument("--factory", help="any FAISS factory string instead of --kind")
    q.add_argument(
        "--dtype", choices=("float16", "float32"), default="float16", help="stored embeddings"
    )
    q.add_argument(
        "--split", action="append", help="only tiles of this split (repeatable; default all)"
    )
    q.add_argument("--shard-size", type=positive_int, default=4096, help="tiles per shard")
    q.add_argument("--batch-size", type=positive_int, default=128)
    q.add_argument(
        "--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N"
    )
    q.add_argument(
        "--tile-size-m",
        type=finite_float,
        help="ground size of a tile in metres (default: the samples' meta.tile_m)",
    )
    q.set_defaults(func=_cmd_index_build)

    p = sub.add_parser("locate", help="where am I? rank gallery tiles for a description or photo")
    p.add_argument("text", nargs="?", help="the ground-level description")
    p.add_argument("--image", help="a street-level photo (models trained with --query image/joint)")
    p.add_argument(
        "--heading", type=finite_float, help="compass bearing the photo's centre looks along"
    )
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--checkpoint", help="model checkpoint (default: the one that built the index)")
    p.add_argument("-k", type=positive_int, default=5, help="tiles to return, 1-100 (default 5)")
    p.add_argument("--near", type=numbers(2, "--near"), metavar="LAT,LON", help="prior: near here")
    p.add_argument("--radius-km", type=finite_float, help="prior: within this distance of --near")
    p.add_argument(
        "--nearest", type=positive_int, metavar="M", help="prior: only the M tiles nearest --near"
    )
    p.add_argument("--region", action="append", help="prior: only this region (repeatable)")
    p.add_argument(
        "--bbox", type=numbers(4, "--bbox"), metavar="W,S,E,N", help="prior: inside this box"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_locate)

    p = sub.add_parser("serve", help="HTTP API and map page over an index")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--checkpoint", help="model checkpoint (default: the one that built the index)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=8000)
    p.add_argument(
        "--basemap",
        help="an XYZ tile URL template for the map's background, e.g. "
        "'https://tile.example.org/{z}/{x}/{y}.png' (default: the gallery's own tiles only)",
    )
    p.set_defaults(func=_cmd_serve)


def _add_build(sub) -> None:
    p = sub.add_parser(
        "build",
        help="build a CORE-style dataset: sample, fetch imagery, describe with an LVLM, write",
        description="Run one stage, or `run` for all of them in order. Every stage is "
        "resumable: run the same command again after a crash or kill to finish the work. "
        "Keys and tokens are read from the environment variables the config names. See "
        "configs/build-example.yaml for every setting.",
        epilog="Writes <out>/work (per-sample outputs, quarantine), <out>/dataset (manifest, "
        "images, WebDataset shards), <out>/report.json and <out>/build.log.",
    )
    p.add_argument(
        "stage",
        choices=["sample", "streetview", "satellite", "describe", "write", "run"],
        help="the stage to run (`run`: all stages in order)",
    )
    p.add_argument("--config", type=Path, help="build YAML (sections sample, streetview, ...)")
    p.add_argument("--out", required=True, help="build folder (work/ and dataset/)")
    p.add_argument("--regions", help="comma-separated region names/slugs, continents or 'all'")
    p.add_argument("--per-region", type=positive_int, help="points per region")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a setting, e.g. satellite.zoom=19 (repeatable)",
    )
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local processes, or Ray tasks sharded by region (needs planetloc[ray])",
    )
    p.add_argument("--address", help="Ray cluster address (default: start a local instance)")
    p.add_argument(
        "--workers",
        type=positive_int,
        help="shards run in parallel: processes (local, default 1) or Ray tasks (default: the "
        "cluster's CPUs)",
    )
    p.add_argument("--retry-quarantined", action="store_true", help="try quarantined samples again")
    p.add_argument(
        "--allow-partial", action="store_true", help="write even if some samples are unfinished"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log retries to stderr")
    p.set_defaults(func=_cmd_build)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="planetloc",
        description="Find where a person is from what they say they see: "
        "text-to-satellite geo-localization.",
    )
    parser.add_argument("--version", action="version", version=f"planetloc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(sub)
    _add_data(sub)
    _add_model(sub)
    _add_index(sub)
    _add_build(sub)
    p = sub.add_parser("demo", help="the main job on the embedded default: synth, train, compare")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--workers", type=positive_int, default=2)
    p.add_argument(
        "--steps", type=positive_int, default=300, help="training steps per model (default 300)"
    )
    p.add_argument(
        "--amp",
        choices=("auto", "bf16", "off"),
        default="auto",
        help="training arithmetic: auto (bf16 autocast where the CPU or GPU does bf16 "
        "natively), bf16, or off (float32)",
    )
    p.set_defaults(func=_cmd_demo)
    return parser


def join_signed_values(argv: Sequence[str]) -> list[str]:
    """``--near -34.6,-58.4`` -> ``--near=-34.6,-58.4`` so argparse takes the value."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        if args[i] in SIGNED_VALUE_OPTIONS and i + 1 < len(args) and args[i + 1].startswith("-"):
            out.append(f"{args[i]}={args[i + 1]}")
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def _check_text(argv: Sequence[str]) -> None:
    for position, arg in enumerate(argv, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "backslashreplace").decode("ascii", "replace")
            raise PlanetlocError(f"argument {position} ({shown}) is not valid UTF-8 text") from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _check_text(argv)
        args = build_parser().parse_args(join_signed_values(argv))
        return int(args.func(args))
    except UsageError as err:
        print(str(err), file=sys.stderr)
        return 2
    except PlanetlocError as err:
        message = " ".join(str(err).split())  # always one line
        print(f"planetloc: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("planetloc: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``planetloc regions | head``): nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as err:
        # A path the system refuses (too long, no permission...): one line naming it.
        name = str(err.filename or "")
        shown = name if len(name) <= 80 else f"{name[:40]}...{name[-20:]}"
        print(f"planetloc: error: {shown}: {err.strerror or err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
