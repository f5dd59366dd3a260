"""The model commands: train, evaluate (with reports), convert-openclip, backbones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from planetloc.cli import main
from planetloc.data.manifest import Manifest
from planetloc.train.checkpoint import load_model

TINY = [
    "--set",
    "model.backbone=tiny-bert-cnn",
    "--set",
    "model.embed_dim=32",
    "--set",
    "model.head_dim=32",
    "--set",
    "model.phys_dim=16",
    "--set",
    "model.heads=2",
    "--set",
    "model.image_size=64",
    "--set",
    "batch_size=16",
    "--set",
    "eval_every=0",
]


@pytest.mark.parametrize("words", [["train"], ["evaluate"], ["convert-openclip"], ["backbones"]])
def test_model_commands_have_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*words, "--help"])
    assert info.value.code == 0 and "usage: planetloc" in capsys.readouterr().out


def test_train_then_evaluate_writes_every_report(small_world: Manifest, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(small_world.root),
                "--out",
                str(run),
                "--method",
                "planet",
                "--set",
                "steps=4",
                *TINY,
            ]
        )
        == 0
    )
    assert (run / "checkpoint.pt").is_file() and (run / "train_summary.json").is_file()
    assert (
        main(
            ["train", "--data", str(small_world.root), "--out", str(run), "--set", "steps=4", *TINY]
        )
        == 2
    )
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(small_world.root),
                "--checkpoint",
                str(run / "checkpoint.pt"),
                "--out",
                str(out),
                "--name",
                "tiny",
                "--rerank-alpha",
                "0.5",
            ]
        )
        == 0
    )
    report = json.loads((out / "tiny.json").read_text())
    assert set(report) == {
        "truncated_fraction",
        "rerank_alpha",
        "m",
        "sets",
        "examples",
        "world_errors",
    }
    world = report["sets"]["world"]
    assert set(world) == {"full", "m100", "regions"}
    assert {
        "R@1",
        "R@5",
        "R@10",
        "L@50",
        "L@100",
        "L@150",
        "mean_error_km",
        "median_error_km",
        "acc@1km",
        "acc@25km",
        "acc@200km",
        "acc@750km",
        "acc@2500km",
    } <= set(world["full"])
    assert world["full"]["gallery"] > world["full"]["queries"]
    md = (out / "tiny.md").read_text()
    assert "| tiny | world |" in md and "| world |" in md
    for suffix in ("recall", "errors", "examples"):
        assert (out / f"tiny_{suffix}.png").read_bytes()[:4] == b"\x89PNG"


def test_explain_gives_per_branch_agreement(small_world: Manifest, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        main(
            ["train", "--data", str(small_world.root), "--out", str(run), "--set", "steps=2", *TINY]
        )
        == 0
    )
    model = load_model(run / "checkpoint.pt")
    tiles = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    scores = model.explain(["I stand by a river.", "Tall towers around me."], tiles)
    assert set(scores) == {"color", "struc", "tex", "global"}
    assert all(v.shape == (2, 3) and v.abs().max() <= 1.0 + 1e-5 for v in scores.values())


def test_convert_openclip_command_writes_a_loadable_folder(
    shared_dir: Path, tmp_path: Path
) -> None:
    from transformers import CLIPModel

    fixture = shared_dir / "fixtures" / "openclip-tiny"
    out = tmp_path / "converted"
    assert (
        main(
            [
                "convert-openclip",
                "--checkpoint",
                str(fixture / "open_clip_model.pt"),
                "--config",
                str(fixture / "open_clip_config.json"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    ref = torch.load(fixture / "reference_io.pt", weights_only=False)
    with torch.no_grad():
        text = CLIPModel.from_pretrained(out).get_text_features(input_ids=ref["token_ids"])
    text = getattr(text, "pooler_output", text)
    assert (text - ref["text_embeds"]).abs().max() <= 1e-4


def test_backbones_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "minilm-cnn" in out and "clip-vit-l14-336" in out and "openclip" in out


def test_demo_options_parse() -> None:
    from planetloc.cli import build_parser

    args = build_parser().parse_args(["demo", "--out", "x", "--steps", "7"])
    assert (args.out, args.steps, args.seed, args.workers) == ("x", 7, 0, 2)


def test_index_build_and_locate_commands(
    tiny_checkpoint: Path, small_world: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "build",
                "--checkpoint",
                str(tiny_checkpoint),
                "--gallery",
                str(small_world.root),
                "--out",
                str(out),
                "--split",
                "test",
                "--shard-size",
                "50",
            ]
        )
        == 0
    )
    capsys.readouterr()
    query = small_world.by_split("test")[0]
    assert (
        main(
            [
                "locate",
                query.text,
                "--index",
                str(out),
                "-k",
                "3",
                "--json",
                "--near",
                f"{query.lat},{query.lon}",
                "--radius-km",
                "2",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert len(result["tiles"]) == 3 and {t["region"] for t in result["tiles"]} == {query.region}
    assert main(["locate", "", "--index", str(out)]) == 2
    assert "the description is empty" in capsys.readouterr().err
    assert main(["locate", "trees", "--index", str(out), "--near", "north"]) == 2
    assert "--near 'north' must be 2 comma-separated numbers" in capsys.readouterr().err


def test_demo_comparison_and_answered_queries(
    small_world: Manifest, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from planetloc.cli import answered_examples, write_comparison
    from planetloc.eval.evaluate import evaluate_model

    report = evaluate_model(load_model(tiny_checkpoint), small_world, progress=False)
    table = write_comparison({"planet": report, "clip": report}, small_world, tmp_path)
    assert "| planet | world |" in table and "| clip | unseen |" in table
    assert (
        json.loads((tmp_path / "comparison.json").read_text())["clip"]["world"]["full"]["queries"]
        > 0
    )
    assert (tmp_path / "comparison_recall.png").read_bytes()[:4] == b"\x89PNG"
    text = answered_examples(report, small_world)
    assert text.count("true location:") == 3 and text.count("   #") == 15
