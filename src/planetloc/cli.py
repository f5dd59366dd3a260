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


def _resolve_manifest(data: str) -> Path:
    path = Path(data)
    if path.is_dir():
        for name in ("manifest.jsonl", "manifest.parquet"):
            if (path / name).is_file():
                return path / name
        raise PlanetlocError(f"{path}: no manifest.jsonl or manifest.parquet in this folder")
    return path


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
    _run_baseline(_resolve_manifest(args.data), Path(args.out))
    print(f"results in {args.out}/baseline.json, baseline.md, baseline_examples.png")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from planetloc.data.synth.generate import SynthConfig

    out = Path(args.out)
    cfg = SynthConfig(seed=args.seed)
    print(
        f"1/2 synthesising SynthCORE ({cfg.regions} regions x {cfg.per_region} samples) "
        f"in {out / 'world'}"
    )
    manifest = _synthesise(cfg, out / "world", args.workers)
    print("2/2 text-to-signature baseline on every evaluation set")
    _run_baseline(manifest, out)
    print(f"demo results in {out}")
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
        "--per-region", type=int, default=60, help="described samples per region (default 60)"
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
    q.add_argument("--view", choices=("panorama", "single"), default="panorama",
                   help="view type when the annotation path does not say")  # fmt: skip
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

    p = sub.add_parser("demo", help="the main job on the embedded default world")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
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
