"""The ``planetloc`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from planetloc import __version__
from planetloc.errors import PlanetlocError


def _synthesise(cfg, out: Path, workers: int) -> Path:
    from tqdm import tqdm

    from planetloc.data.synth.generate import generate_world

    with tqdm(total=cfg.regions, desc="synthesising regions", unit="region") as bar:

        def progress(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

        manifest = generate_world(cfg, out, workers=workers, progress=progress)
    summary = json.loads((out / "world.json").read_text(encoding="utf-8"))
    print(f"wrote {summary['samples']} samples to {manifest} ({summary['splits']})")
    return manifest


def _cmd_synth(args: argparse.Namespace) -> int:
    from planetloc.data.synth.generate import SynthConfig

    cfg = SynthConfig(
        regions=args.regions,
        per_region=args.per_region,
        size=args.size,
        seed=args.seed,
        difficulty=args.difficulty,
        distractors=args.distractors,
        format=args.format,
    )
    _synthesise(cfg, Path(args.out), args.workers)
    return 0


def _report_skips(manifest) -> None:
    from planetloc.data.manifest import skip_report

    print(skip_report(manifest))
    for bad in manifest.skipped:
        print(f"  skipped row {bad.row} (id={bad.id}): {bad.reason}", file=sys.stderr)


def _cmd_validate(args: argparse.Namespace) -> int:
    from planetloc.data.manifest import read_manifest

    manifest = read_manifest(
        args.manifest, on_bad_sample=args.on_bad_sample, check_images=not args.no_image_check
    )
    _report_skips(manifest)
    counts: dict[str, int] = {}
    for s in manifest.samples:
        counts[s.split] = counts.get(s.split, 0) + 1
    print(f"ok: {len(manifest.samples)} valid samples by split {counts}")
    return 0


def _cmd_import_cvgtext(args: argparse.Namespace) -> int:
    from planetloc.data.importers.cvgtext import import_cvgtext
    from planetloc.data.manifest import build_manifest

    out = Path(args.out)
    samples = import_cvgtext(args.root, manifest_dir=out.parent, cities=args.city, view=args.view)
    manifest = build_manifest((s.to_dict() for s in samples), out, on_bad_sample=args.on_bad_sample)
    _report_skips(manifest)
    return 0


def _cmd_import_table(args: argparse.Namespace) -> int:
    from planetloc.data.importers.table import import_table, parse_mapping
    from planetloc.data.manifest import build_manifest

    out = Path(args.out)
    defaults = parse_mapping(args.set) if args.set else {}
    records = import_table(
        args.table,
        manifest_dir=out.parent,
        mapping=parse_mapping(args.map),
        image_root=args.image_root,
        defaults=defaults,
    )
    manifest = build_manifest(records, out, on_bad_sample=args.on_bad_sample)
    _report_skips(manifest)
    return 0


def _cmd_regions(args: argparse.Namespace) -> int:
    from planetloc.geo.regions import continent_group, load_catalog

    rows = [
        r
        for r in load_catalog()
        if not args.continent or r.continent.lower() == args.continent.lower()
    ]
    if not rows:
        raise PlanetlocError(f"no region on continent {args.continent!r}")
    if args.json:
        print(
            json.dumps(
                [r.__dict__ | {"subset": continent_group(r.continent)} for r in rows], indent=1
            )
        )
    else:
        for r in rows:
            print(
                f"{r.slug:32s} {r.name:28s} {r.country:24s} {r.continent:14s} "
                f"{r.lat:9.4f} {r.lon:9.4f}"
            )
    return 0


def _run_baseline(manifest_path: Path, out_dir: Path) -> dict:
    from planetloc.atomic import write_text
    from planetloc.baselines.evaluate import evaluate_text_to_signature, markdown_table
    from planetloc.data.manifest import read_manifest
    from planetloc.eval.figures import retrieval_examples_png

    manifest = read_manifest(manifest_path)
    report = evaluate_text_to_signature(manifest)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "baseline.json", json.dumps(report, indent=1) + "\n")
    table = markdown_table(report)
    write_text(out_dir / "baseline.md", table + "\n")
    by_id = {s.id: s for s in manifest.samples}
    examples = [
        (
            ex["text"],
            [
                (str(manifest.resolve(by_id[t["id"]].sat_path)), t["true"], t["score"])
                for t in ex["top"]
            ],
        )
        for ex in report.get("examples", [])
    ]
    if examples:
        retrieval_examples_png(
            examples,
            out_dir / "baseline_examples.png",
            title="text-to-signature baseline: top-5 tiles",
        )
    print(table)
    return report


def _cmd_baseline(args: argparse.Namespace) -> int:
    from planetloc.data.manifest import find_manifest

    _run_baseline(find_manifest(args.data), Path(args.out))
    print(f"results in {args.out}/baseline.json, baseline.md, baseline_examples.png")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from planetloc.train.config import load_config
    from planetloc.train.trainer import train
    from planetloc.yaml_config import parse_overrides

    overrides = parse_overrides(args.set)
    overrides["data"] = args.data
    overrides["out"] = args.out
    cfg = load_config(args.config, method=args.method, overrides=overrides)
    summary = train(cfg, resume=args.resume)
    last = next((r for r in reversed(summary["history"]) if "loss" in r), {})
    print(
        f"trained {cfg.method} for {summary['steps']} steps; "
        f"last loss {last.get('loss', float('nan')):.4f}; checkpoint {summary['checkpoint']}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from planetloc.data.manifest import find_manifest, read_manifest
    from planetloc.eval.evaluate import evaluate_model
    from planetloc.eval.report import comparison_table, write_report
    from planetloc.train.checkpoint import load_model

    if args.checkpoint:
        model = load_model(args.checkpoint)
    else:
        from planetloc.model.planet import ModelConfig, Planet

        model = Planet(ModelConfig(backbone=args.backbone))  # zero-shot: untrained heads
    manifest = read_manifest(find_manifest(args.data))
    if args.zero_shot_stats or not args.checkpoint:
        from planetloc.data.images import load_tiles
        from planetloc.train.data import signatures_of

        train = manifest.by_split("train") or manifest.samples
        tiles = load_tiles(manifest, train, size=model.cfg.image_size)
        model.signature_heads.set_statistics(signatures_of(model, tiles))
    alpha = args.rerank_alpha
    if alpha is None:  # the method's own default, saved with the run
        from planetloc.train.checkpoint import read_checkpoint

        alpha = (
            read_checkpoint(args.checkpoint)["train_config"].get("rerank_alpha", 0.0)
            if args.checkpoint
            else 0.0
        )
    report = evaluate_model(model, manifest, m=args.m, rerank_alpha=alpha)
    write_report(report, manifest, args.out, name=args.name)
    print(comparison_table({args.name: report}))
    print(
        f"truncated queries: {100 * report['truncated_fraction']:.1f}%; "
        f"results in {args.out}/{args.name}.json"
    )
    return 0


def _cmd_convert_openclip(args: argparse.Namespace) -> int:
    from planetloc.model.openclip import load_openclip

    model = load_openclip(args.checkpoint, args.config)
    model.save_pretrained(args.out)
    if args.tokenizer:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(args.tokenizer).save_pretrained(args.out)
    print(
        f"wrote a transformers CLIP model to {args.out}; train with "
        f"--set model.backbone=clip-vit-b32 --set model.text_source={args.out}"
    )
    return 0


def _cmd_backbones(args: argparse.Namespace) -> int:
    from planetloc.model.registry import BACKBONES

    for name, spec in sorted(BACKBONES.items()):
        print(f"{name:18s} {spec['description']}")
    return 0


def _train_or_reuse(cfg, progress: bool = True) -> None:
    """Train ``cfg``; a finished run is reused and an interrupted one resumed."""
    from planetloc.train.checkpoint import read_checkpoint
    from planetloc.train.trainer import CHECKPOINT, train

    ckpt = Path(cfg.out) / CHECKPOINT
    if ckpt.exists() and read_checkpoint(ckpt)["step"] >= cfg.steps:
        print(f"   {cfg.method}: reusing the finished run in {cfg.out}")
        return
    train(cfg, resume=ckpt.exists(), progress=progress)


def _cmd_index_build(args: argparse.Namespace) -> int:
    from planetloc.index.store import IndexParams, build_index

    params = IndexParams(kind=args.kind, dtype=args.dtype)
    splits = tuple(args.split) if args.split else None
    out = build_index(
        args.checkpoint,
        args.gallery,
        args.out,
        params=params,
        splits=splits,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
    )
    info = json.loads((out / "index.json").read_text(encoding="utf-8"))
    print(
        f"indexed {info['count']} tiles "
        f"({info['params']['kind']}, {info['params']['dtype']}) in {out}"
    )
    return 0


def _parse_floats(value: str, count: int, what: str) -> tuple[float, ...]:
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise PlanetlocError(f"{what} {value!r} must be {count} comma-separated numbers") from None
    if len(parts) != count:
        raise PlanetlocError(f"{what} {value!r} must be {count} comma-separated numbers")
    return parts


def _cmd_locate(args: argparse.Namespace) -> int:
    from planetloc.index.locate import Locator
    from planetloc.index.priors import Prior

    near = _parse_floats(args.near, 2, "--near") if args.near else None
    bbox = _parse_floats(args.bbox, 4, "--bbox") if args.bbox else None
    prior = Prior(
        bbox=bbox,
        near=near,
        radius_km=args.radius_km,
        nearest=args.nearest,
        regions=tuple(args.region or ()),
    )
    locator = Locator.open(args.index, checkpoint=args.checkpoint)
    result = locator.locate(args.text, k=args.k, prior=None if prior.empty else prior)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    for rank, hit in enumerate(result.tiles, start=1):
        phys = " ".join(f"{k} {v:+.2f}" for k, v in hit.physics.items())
        print(
            f"#{rank} {hit.lat:.6f}, {hit.lon:.6f}  {hit.region:24s} "
            f"score {hit.score:.3f}  ({phys})  {hit.id}"
        )
    if result.estimate:
        e = result.estimate
        print(f"estimate: {e.lat:.6f}, {e.lon:.6f} +- {e.radius_m:.0f} m")
    else:
        print("no tile satisfies the prior")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from planetloc.serve.app import serve

    serve(args.index, host=args.host, port=args.port, checkpoint=args.checkpoint)
    return 0


def write_comparison(reports: dict, manifest, out: Path) -> str:
    """Write comparison.md/.json and comparison_recall.png for several methods; return the table."""
    from planetloc.atomic import write_text
    from planetloc.eval.figures import recall_curve_png
    from planetloc.eval.report import comparison_table, recall_curve

    table = comparison_table(reports) + "\n\n" + comparison_table(reports, "m100")
    write_text(out / "comparison.md", table + "\n")
    write_text(
        out / "comparison.json",
        json.dumps({m: r["sets"] for m, r in reports.items()}, indent=1) + "\n",
    )
    recall_curve_png(
        {m: recall_curve(r) for m, r in reports.items()},
        out / "comparison_recall.png",
        title="SynthCORE world-level test: recall@K",
    )
    return table


def answered_examples(report: dict, manifest) -> str:
    """The report's example queries with their top-5 locations and distances to the truth."""
    from planetloc.geo.coords import haversine_m

    by_id = {s.id: s for s in manifest.samples}
    lines = []
    for ex in report["examples"]:
        lines.append(
            f'\n  "{ex["text"][:150]}..."\n  true location: {ex["lat"]:.5f}, {ex["lon"]:.5f}'
        )
        for rank, top in enumerate(ex["top"], start=1):
            err = float(haversine_m(ex["lat"], ex["lon"], top["lat"], top["lon"]))
            mark = "  <- true tile" if top["true"] else ""
            lines.append(
                f"   #{rank} {top['lat']:.5f}, {top['lon']:.5f}  "
                f"{by_id[top['id']].region:24s} {err:8.0f} m{mark}"
            )
    return "\n".join(lines)


def _print_build_report(report: dict) -> None:
    for stage, part in report["stages"].items():
        counts = ", ".join(f"{k} {v}" for k, v in part["counts"].items()) or "nothing to do"
        rate = f" ({part['samples_per_s']} samples/s)" if part.get("samples_per_s") else ""
        print(f"{stage}: {counts}{rate}")
        if "describe" in part:
            d = part["describe"]
            print(
                f"  LVLM: {d['requests']} requests, {d['cached']} cached, "
                f"{d['prompt_tokens']} prompt + {d['completion_tokens']} completion tokens, "
                f"rejected {d['rejected'] or 'none'}"
            )
    if "dataset" in report:
        d = report["dataset"]
        print(f"dataset: {d['samples']} samples, splits {d['splits']}, states {d['states']}")
    q = report["quarantine"]
    if q["count"]:
        print(f"quarantined: {q['count']} samples {q['by_stage']}")
        for item in q["samples"][:5]:
            print(f"  {item['id']} [{item['stage']}]: {item['reason']}")
        print("  (all in report.json; rerun with --retry-quarantined to try them again)")


def _cmd_build(args: argparse.Namespace) -> int:
    import logging

    from planetloc.builder.config import load_build_config, secrets_of
    from planetloc.builder.engine import run_build
    from planetloc.builder.fetch import RedactingFilter, Redactor
    from planetloc.builder.store import STAGES
    from planetloc.yaml_config import parse_overrides

    overrides = parse_overrides(args.set)
    if args.regions:
        overrides["sample.regions"] = args.regions
    if args.per_region is not None:
        overrides["sample.per_region"] = args.per_region
    cfg = load_build_config(args.config, overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    redacting = RedactingFilter(Redactor(secrets_of(cfg)))
    handlers: list[logging.Handler] = [
        logging.StreamHandler(),
        logging.FileHandler(out / "build.log"),
    ]
    handlers[0].setLevel(logging.INFO if args.verbose else logging.WARNING)
    handlers[1].setLevel(logging.INFO)
    logger = logging.getLogger("planetloc.builder")
    logger.setLevel(logging.INFO)
    for handler in handlers:
        handler.addFilter(redacting)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    stages = list(STAGES) if args.stage == "run" else [args.stage]
    try:
        report = run_build(
            cfg,
            out,
            stages,
            engine=args.engine,
            workers=args.workers,
            address=args.address,
            retry_quarantined=args.retry_quarantined,
            allow_partial=args.allow_partial,
        )
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
    _print_build_report(report)
    print(f"report: {out / 'report.json'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from planetloc.data.manifest import read_manifest
    from planetloc.data.synth.generate import SynthConfig
    from planetloc.eval.evaluate import evaluate_model
    from planetloc.eval.report import write_report
    from planetloc.train.checkpoint import load_model
    from planetloc.train.config import load_config

    out = Path(args.out)
    world = SynthConfig(seed=args.seed)
    print(
        f"1/4 synthesising SynthCORE ({world.regions} regions x {world.per_region} samples) "
        f"in {out / 'world'}"
    )
    manifest_path = _synthesise(world, out / "world", args.workers)
    print("2/4 text-to-signature baseline")
    _run_baseline(manifest_path, out)
    manifest = read_manifest(manifest_path)
    reports = {}
    for i, method in enumerate(("planet", "clip")):
        print(f"3/4 training {method} ({i + 1}/2, {args.steps} steps, same data and budget)")
        overrides = {
            "data": str(manifest_path),
            "out": str(out / method),
            "steps": args.steps,
            "seed": args.seed,
        }
        cfg = load_config(method=method, overrides=overrides)
        _train_or_reuse(cfg)
        model = load_model(out / method / "checkpoint.pt")
        reports[method] = evaluate_model(model, manifest, rerank_alpha=cfg.rerank_alpha)
        write_report(reports[method], manifest, out, name=method)
    print("4/4 comparison (full gallery; m100 = the 100 tiles nearest the true location)")
    print(write_comparison(reports, manifest, out))
    print("\nExample queries answered by planet (top-5 locations):")
    print(answered_examples(reports["planet"], manifest))
    print(f"\ndemo results in {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="planetloc",
        description="Find where a person is from what they say they see: "
        "text-to-satellite geo-localization.",
    )
    parser.add_argument("--version", action="version", version=f"planetloc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate a SynthCORE world (tiles, descriptions, manifest)")
    p.add_argument(
        "--out", required=True, help="output folder (resumes if it holds the same world)"
    )
    p.add_argument("--regions", type=int, default=24, help="number of regions, 1-225 (default 24)")
    p.add_argument(
        "--per-region", type=int, default=200, help="described samples per region (default 200)"
    )
    p.add_argument("--size", type=int, default=128, help="tile size in pixels (default 128)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument("--difficulty", choices=("easy", "medium", "hard"), default="medium")
    p.add_argument(
        "--distractors", type=int, default=20, help="gallery-only tiles per region (default 20)"
    )
    p.add_argument(
        "--format", choices=("jsonl", "parquet"), default="jsonl", help="manifest format"
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("validate", help="check a manifest and its images")
    p.add_argument("manifest", help="manifest .jsonl or .parquet")
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

    p = sub.add_parser("baseline", help="fit and evaluate the text-to-signature baseline")
    p.add_argument("--data", required=True, help="manifest, or a folder holding manifest.jsonl")
    p.add_argument("--out", required=True, help="folder for baseline.json/.md/_examples.png")
    p.set_defaults(func=_cmd_baseline)

    p = sub.add_parser("train", help="train PLANET or a baseline (torchrun for several processes)")
    p.add_argument("--data", required=True, help="manifest, or a folder holding manifest.jsonl")
    p.add_argument(
        "--out", required=True, help="run folder: checkpoint.pt, metrics.jsonl, train_summary.json"
    )
    p.add_argument(
        "--method",
        choices=("planet", "crosstext2loc", "clip"),
        help="preset: planet (L_itc + L_phy, 248 tokens), crosstext2loc (L_itc, 248 tokens), "
        "clip (L_itc, 77 tokens)",
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
    p.add_argument("--data", required=True, help="manifest, or a folder holding manifest.jsonl")
    p.add_argument(
        "--checkpoint", help="checkpoint.pt of a run; omit for a zero-shot (untrained) model"
    )
    p.add_argument("--backbone", default="minilm-cnn", help="backbone of the zero-shot model")
    p.add_argument("--out", required=True, help="folder for <name>.json/.md and pictures")
    p.add_argument("--name", default="eval", help="file name stem (default eval)")
    p.add_argument(
        "--m", type=int, default=100, help="tiles per query in the m-nearest protocol (default 100)"
    )
    p.add_argument(
        "--rerank-alpha",
        type=float,
        default=None,
        help="re-rank the top 50 by s_itc + alpha * physical agreement "
        "(default: the run's own setting; 1.0 for planet, 0 otherwise)",
    )
    p.add_argument("--zero-shot-stats", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "convert-openclip", help="turn an open_clip ViT checkpoint into a transformers CLIP folder"
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="open_clip .pt/.bin state dict (RemoteCLIP, GeoRSCLIP...)",
    )
    p.add_argument("--config", required=True, help="open_clip_config.json (or a model_cfg JSON)")
    p.add_argument("--out", required=True, help="output folder (save_pretrained layout)")
    p.add_argument(
        "--tokenizer", help="folder or cached hub id of the CLIP tokenizer to copy alongside"
    )
    p.set_defaults(func=_cmd_convert_openclip)

    p = sub.add_parser("backbones", help="list the named backbones")
    p.set_defaults(func=_cmd_backbones)

    p = sub.add_parser("index", help="build a searchable gallery index")
    isub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = isub.add_parser("build", help="encode gallery tiles (resumable) and build a FAISS index")
    q.add_argument("--checkpoint", required=True, help="checkpoint.pt of a trained run")
    q.add_argument("--gallery", required=True, help="manifest (or folder) of the gallery tiles")
    q.add_argument("--out", required=True, help="index folder")
    q.add_argument(
        "--kind",
        choices=("flat", "hnsw", "ivfpq"),
        default="flat",
        help="flat: exact inner product (default); hnsw, ivfpq: approximate, for large galleries",
    )
    q.add_argument(
        "--dtype", choices=("float16", "float32"), default="float16", help="stored embeddings"
    )
    q.add_argument(
        "--split", action="append", help="only tiles of this split (repeatable; default all)"
    )
    q.add_argument("--shard-size", type=int, default=4096, help="tiles per resumable shard")
    q.add_argument("--batch-size", type=int, default=128)
    q.set_defaults(func=_cmd_index_build)

    p = sub.add_parser("locate", help="where am I? rank gallery tiles for a description")
    p.add_argument("text", help="the ground-level description")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--checkpoint", help="model checkpoint (default: the one that built the index)")
    p.add_argument("-k", type=int, default=5, help="tiles to return, 1-100 (default 5)")
    p.add_argument("--near", metavar="LAT,LON", help="prior: near this point")
    p.add_argument("--radius-km", type=float, help="prior: within this distance of --near")
    p.add_argument(
        "--nearest", type=int, metavar="M", help="prior: only the M tiles nearest --near"
    )
    p.add_argument("--region", action="append", help="prior: only this region (repeatable)")
    p.add_argument("--bbox", metavar="W,S,E,N", help="prior: inside this bounding box")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_locate)

    p = sub.add_parser("serve", help="HTTP API and map page over an index")
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--checkpoint", help="model checkpoint (default: the one that built the index)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=_cmd_serve)

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
    p.add_argument("--out", type=Path, required=True, help="build folder (work/ and dataset/)")
    p.add_argument("--regions", help="comma-separated region names/slugs, continents or 'all'")
    p.add_argument("--per-region", type=int, help="points per region (sample.per_region)")
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
        type=int,
        help="shards run in parallel: processes (local, default 1) or Ray tasks (default: the "
        "cluster's CPUs)",
    )
    p.add_argument("--retry-quarantined", action="store_true", help="try quarantined samples again")
    p.add_argument(
        "--allow-partial", action="store_true", help="write even if some samples are unfinished"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log retries to stderr")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("demo", help="the main job on the embedded default: synth, train, compare")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=300, help="training steps per model (default 300)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except PlanetlocError as err:
        print(f"planetloc: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("planetloc: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
