"""The model commands: train, evaluate (with reports), convert-openclip, backbones, index and
locate, and the comparison workflow the demo runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from planetloc.cli import main
from planetloc.data.manifest import Manifest
from planetloc.model.checkpoint import load_model

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
    "--set",
    "workers=0",
]
METRICS = {
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
    "queries",
    "gallery",
    "candidates",
}


@pytest.mark.parametrize(
    "words", [["train"], ["evaluate"], ["convert-openclip"], ["backbones"], ["index", "build"]]
)
def test_model_commands_have_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*words, "--help"])
    assert info.value.code == 0 and "usage: planetloc" in capsys.readouterr().out


def test_train_then_evaluate_writes_every_report(
    small_world: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    base = ["train", "--data", str(small_world.root), "--out", str(run)]
    assert main([*base, "--method", "planet", "--set", "steps=4", *TINY]) == 0
    assert (run / "checkpoint.safetensors").is_file() and (run / "train_summary.json").is_file()
    assert main([*base, "--set", "steps=4", *TINY]) == 2  # exists: resume or use a new --out
    assert "pass --resume" in capsys.readouterr().err
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(small_world.root), "--checkpoint", str(run)]
    assert main([*args, "--out", str(out), "--name", "tiny", "--rerank-alpha", "0.5"]) == 0
    report = json.loads((out / "tiny.json").read_text())
    assert set(report) == {
        "schema",
        "model",
        "protocol",
        "truncated_fraction",
        "sets",
        "examples",
        "world_errors",
        "selection",
    }
    assert report["schema"] == "planetloc-evaluation-v2"
    assert report["model"]["backbone"] == "tiny-bert-cnn" and report["model"]["method"] == "planet"
    assert report["protocol"]["rerank"]["alpha"] == 0.5
    world = report["sets"]["world"]
    assert set(world) == {"full", "m100", "regions"}
    assert set(world["full"]) == METRICS == set(world["m100"])
    assert world["full"]["gallery"] > world["full"]["queries"]
    md = (out / "tiny.md").read_text()
    assert "| tiny | tiny-bert-cnn | world |" in md and "| backbone |" in md
    for suffix in ("recall", "errors", "examples"):
        assert (out / f"tiny_{suffix}.png").read_bytes()[:4] == b"\x89PNG"
    # The CVG-Text rule, reproduced, on the same run.
    assert main([*args, "--out", str(out), "--name", "cvg", "--nearest", "cvg-text"]) == 0
    assert json.loads((out / "cvg.json").read_text())["protocol"]["nearest"] == "cvg-text"


def test_explain_gives_per_branch_agreement(tiny_checkpoint: Path) -> None:
    model = load_model(tiny_checkpoint)
    tiles = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    scores = model.explain(["I stand by a river.", "Tall towers around me."], tiles)
    assert set(scores) == {"color", "struc", "tex", "global"}
    assert all(v.shape == (2, 3) and v.abs().max() <= 1.0 + 1e-5 for v in scores.values())


def test_convert_openclip_writes_a_self_contained_offline_folder(
    shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from planetloc.model.planet import ModelConfig, Planet
    from test_model import _write_clip_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fixture = shared_dir / "fixtures" / "openclip-tiny"
    tok = tmp_path / "tok"
    _write_clip_tokenizer(tok)
    out = tmp_path / "converted"
    args = ["convert-openclip", "--checkpoint", str(fixture / "open_clip_model.pt")]
    args += ["--config", str(fixture / "open_clip_config.json"), "--out", str(out)]
    assert main([*args, "--tokenizer", str(tok)]) == 0
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()
    }
    assert (out / "preprocessor_config.json").is_file()
    ref = torch.load(fixture / "reference_io.pt", weights_only=True)
    model = Planet(
        ModelConfig(
            backbone="openclip",
            text_source=str(out),
            max_tokens=77,  # the reference used 77 positions (no stretching)
            embed_dim=16,
            head_dim=16,
            heads=2,
        )
    )
    with torch.no_grad():
        pooled = model.text_tower(ref["token_ids"], torch.ones_like(ref["token_ids"])).pooled
    assert (pooled - ref["text_embeds"]).abs().max() <= 1e-4
    enc, _ = model.tokenize(["a road by the river"])  # its own tokenizer, no network
    assert enc["input_ids"].shape[0] == 1
    assert main([*args, "--tokenizer", str(tok)]) == 2  # never writes into a used folder


def test_convert_openclip_refuses_a_malformed_config(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    args = ["convert-openclip", "--checkpoint", str(bad), "--config", str(bad)]
    assert main([*args, "--out", str(tmp_path / "o"), "--tokenizer", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a JSON open_clip config" in err and len(err.strip().splitlines()) == 1


def test_backbones_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "minilm-cnn" in out and "clip-vit-l14-336" in out and "openclip" in out


def test_index_build_and_locate_commands(
    tiny_checkpoint: Path, small_world: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "idx"
    args = ["index", "build", "--checkpoint", str(tiny_checkpoint), "--gallery"]
    args += [str(small_world.root), "--out", str(out), "--split", "test", "--shard-size", "50"]
    assert main(args) == 0
    assert "shards reused" in capsys.readouterr().out
    query = small_world.by_split("test")[0]
    locate = ["locate", query.text, "--index", str(out), "-k", "3", "--json"]
    assert main([*locate, "--near", f"{query.lat},{query.lon}", "--radius-km", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["tiles"]) == 3 and {t["region"] for t in result["tiles"]} == {query.region}
    # Negative coordinates are values, not options.
    assert main([*locate, "--near", "-34.6,-58.4", "--radius-km", "20000"]) == 0
    assert len(json.loads(capsys.readouterr().out)["tiles"]) == 3
    assert main(["locate", "", "--index", str(out)]) == 2
    assert "the description is empty" in capsys.readouterr().err
    assert main(["locate", "trees", "--index", str(out), "--near", "north"]) == 2
    assert "--near must be 2 comma-separated numbers" in capsys.readouterr().err


def test_comparison_and_answered_queries(
    small_world: Manifest, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from planetloc.workflows.comparison import answered_examples, write_comparison
    from planetloc.workflows.evaluation import run_evaluation

    report = run_evaluation(
        str(small_world.path), str(tmp_path), checkpoint=str(tiny_checkpoint), progress=False
    )
    table = write_comparison({"planet": report, "itc-long": report}, tmp_path)
    assert "| planet | tiny-bert-cnn | world |" in table and "| itc-long |" in table
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["itc-long"]["sets"]["world"]["full"]["queries"] > 0
    assert (tmp_path / "comparison_recall.png").read_bytes()[:4] == b"\x89PNG"
    regions = {s.id: s.region for s in small_world.samples}
    text = answered_examples(report, regions)
    assert text.count("true location:") == 3 and text.count("   #") == 15
