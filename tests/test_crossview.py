"""Cross-view: street image -> satellite and joint (text + image) queries, geographic hard
negatives, north alignment, and the CLI's image queries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_MODEL
from planetloc.cli import main
from planetloc.data.manifest import Manifest
from planetloc.data.stream import StreamSpec, north_aligned, open_source, train_loader
from planetloc.geo.coords import haversine_m
from planetloc.model.planet import joint_scores
from planetloc.train.config import TrainConfig, load_config
from planetloc.train.trainer import train


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def _street_config(world: Manifest, out: Path, **overrides: object) -> TrainConfig:
    """A tiny planet config on ``world`` that reads 32 x 128 street views."""
    return load_config(
        method="planet",
        overrides={
            "data": str(world.path),
            "out": str(out),
            "steps": 2,
            "batch_size": 8,
            "eval_every": 0,
            "workers": 0,
            "model.street_size": [32, 128],
            **TINY_MODEL,
            **overrides,
        },
    )


def test_joint_projection_score_is_the_length_of_the_projection() -> None:
    gen = torch.Generator().manual_seed(0)
    t, v = _unit(torch.randn(4, 16, generator=gen)), _unit(torch.randn(4, 16, generator=gen))
    g = _unit(torch.randn(9, 16, generator=gen))
    score = joint_scores(t, v, g, "projection")
    for i in range(4):
        basis = torch.linalg.qr(torch.stack([t[i], v[i]], dim=1)).Q  # (16, 2) orthonormal
        expected = (g @ basis).norm(dim=1)
        assert torch.allclose(score[i], expected, atol=1e-5)
    assert (score >= 0).all() and (score <= 1 + 1e-5).all()
    # A tile in the plane of the two query vectors scores 1; the text alone never more.
    inside = _unit(0.3 * t[0] + 0.7 * v[0])
    assert joint_scores(t[:1], v[:1], inside[None], "projection").item() == pytest.approx(
        1, abs=1e-5
    )
    assert (score >= (t @ g.t()).abs() - 1e-6).all() and (score >= (v @ g.t()).abs() - 1e-6).all()
    assert torch.allclose(joint_scores(t, v, g, "sum"), t @ g.t() + v @ g.t())
    assert torch.allclose(joint_scores(t, v, g, "mean"), _unit(t + v) @ g.t())


def test_north_alignment_rolls_the_heading_to_north() -> None:
    pano = np.zeros((8, 360, 3), dtype=np.uint8)
    pano[:, 180] = 255  # the centre column looks along the heading
    for heading in (0.0, 90.0, 270.0):
        rolled = north_aligned(pano, heading)
        column = int(np.flatnonzero(rolled[0, :, 0])[0])
        # Centre (180) is north after rolling: a feature dead ahead of an observer facing
        # `heading` lands `heading` degrees clockwise of the centre.
        assert column == (180 + int(heading)) % 360


def test_geographic_hard_negatives_group_neighbours_in_a_batch(small_world: Manifest) -> None:
    spec = dict(seed=0, batch_size=16, shuffle_buffer=128, image_size=32)
    grouped = next(
        iter(train_loader(open_source(small_world.path), StreamSpec(**spec, neighbours=4)))
    )
    plain = next(iter(train_loader(open_source(small_world.path), StreamSpec(**spec))))

    def spread(batch: dict) -> float:
        lat, lon = batch["lat"].numpy(), batch["lon"].numpy()
        groups = [(lat[i : i + 4], lon[i : i + 4]) for i in range(0, 16, 4)]
        return float(np.mean([haversine_m(a[0], b[0], a[1:], b[1:]).mean() for a, b in groups]))

    assert spread(grouped) < 0.05 * spread(plain)  # neighbours: same region, metres apart


@pytest.mark.parametrize("query", ["image", "joint"])
def test_street_view_models_train_evaluate_and_locate(
    query: str, small_world: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from planetloc.workflows.evaluation import run_evaluation

    cfg = _street_config(
        small_world,
        tmp_path / "run",
        steps=3,
        batch_size=16,
        neighbours=4,
        **{"model.query": query, "model.street_align": "north"},
    )
    summary = train(cfg, progress=False)
    assert summary["query"] == query
    losses = [r for r in summary["history"] if "loss" in r]
    assert "loss_view" in losses[-1] and (query != "joint" or "loss_joint" in losses[-1])
    scores = {}
    kinds = (
        [("image", None)]
        if query == "image"
        else [("joint", s) for s in ("projection", "mean", "sum")]
    )
    for kind, how in kinds:
        report = run_evaluation(
            str(small_world.path),
            str(tmp_path / f"ev-{kind}-{how}"),
            checkpoint=str(tmp_path / "run"),
            query=kind,
            joint_score=how,
            rerank_alpha=0.5,
            progress=False,
        )
        assert report["protocol"]["query"] == kind and report["protocol"]["joint_score"] == how
        # Image queries are never re-ranked, and their report says so.
        applied = {"alpha": 0.0, "source": "none"} if kind == "image" else {"alpha": 0.5}
        assert applied.items() <= report["protocol"]["rerank"].items()
        world = report["sets"]["world"]["full"]
        assert world["queries"] == len(small_world.by_split("test"))
        scores[how] = world["R@10"]
    _check_validation_queries(query, small_world, tmp_path / "run")
    # Locate with a photo (and its heading, which north alignment needs).
    test = small_world.by_split("test")[0]
    idx = tmp_path / "idx"
    args = ["index", "build", "--checkpoint", str(tmp_path / "run"), "--gallery"]
    assert main([*args, str(small_world.path), "--out", str(idx), "--split", "test"]) == 0
    capsys.readouterr()
    photo = str(small_world.resolve(test.street_path))
    heading = str(test.meta["heading_deg"])
    text = [test.text] if query == "joint" else []
    assert (
        main(
            ["locate", *text, "--image", photo, "--heading", heading, "--index", str(idx), "--json"]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == query and len(result["tiles"]) == 5
    assert main(["locate", "--image", photo, "--index", str(idx)]) == 2  # no heading: refused
    assert "give the heading" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    assert main(["locate", "--image", str(bad), "--heading", "0", "--index", str(idx)]) == 2
    err = capsys.readouterr().err
    assert ("not an image format" in err or "unreadable image" in err) and err.count("\n") == 1


def test_joint_loss_weights_scale_the_street_losses(small_world: Manifest, tmp_path: Path) -> None:
    cfg = _street_config(
        small_world,
        tmp_path / "run",
        log_every=1,
        select_alpha=False,
        view_weight=0.25,
        joint_weight=0.5,
        **{"model.query": "joint"},
    )
    rows = [r for r in train(cfg, progress=False)["history"] if "loss" in r]
    assert rows
    for r in rows:
        phys = r["loss_color"] + r["loss_struc"] + r["loss_tex"]
        text = r["loss_itc"] + cfg.lambda_phy * phys
        expected = text + 0.25 * r["loss_view"] + 0.5 * r["loss_joint"]
        assert r["loss"] == pytest.approx(expected, rel=1e-4)
        # ... and not the unweighted sum the defaults give.
        assert abs(r["loss"] - (text + r["loss_view"] + r["loss_joint"])) > 1e-3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"view_weight": -0.5}, "'view_weight' must not be negative"),
        ({"view_weight": 0, "joint_weight": 0}, "needs view_weight or joint_weight above 0"),
    ],
)
def test_bad_joint_loss_weights_are_refused(overrides: dict, message: str) -> None:
    from planetloc.errors import PlanetlocError

    with pytest.raises(PlanetlocError, match=message):
        load_config(method="planet", overrides={"model.query": "joint", **overrides}).check()


def _check_validation_queries(query: str, world: Manifest, run: Path) -> None:
    """Validation scores the query kind asked for (a benchmark chooses settings with it), not
    only the one the model was trained for, and refuses a kind the model cannot read."""
    from planetloc.errors import PlanetlocError
    from planetloc.eval import evaluate as evaluate_module
    from planetloc.eval.evaluate import encode_gallery_in_memory, evaluate_split, query_texts
    from planetloc.eval.protocols import split_set
    from planetloc.model.inference import Encoder
    from planetloc.workflows.models import trained

    model = trained(str(run)).model
    val = split_set(world.path, "val")
    assert val is not None
    if query == "image":
        with pytest.raises(PlanetlocError, match="street images only"):
            evaluate_split(model, val, query="text")
        return
    encoder = Encoder(model)
    texts = encoder.encode_texts(query_texts(val.table, val.queries, None)).global_
    tiles = encode_gallery_in_memory(encoder, val.table, val.gallery).embeddings[val.gallery]
    top1 = np.argmax(texts.astype(np.float64) @ tiles.astype(np.float64).T, axis=1)
    expected = 100.0 * np.mean(val.gallery[top1] == val.queries)
    assert evaluate_split(model, val, query="text")["R@1"] == pytest.approx(expected)
    asked = []
    real = evaluate_module.encode_queries

    def recording(*args: object, **kwargs: object) -> object:
        asked.append((kwargs["query"], kwargs["joint_score"]))
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluate_module, "encode_queries", recording)
        for kind, how in (("text", None), ("image", None), ("joint", "sum"), (None, None)):
            assert set(evaluate_split(model, val, query=kind, joint_score=how)) == {
                "R@1",
                "R@5",
                "R@10",
            }
    trained_as = (model.cfg.query, model.cfg.joint_score)
    assert asked == [("text", "projection"), ("image", "projection"), ("joint", "sum"), trained_as]
    _check_late_fusion(model, val)


def _check_late_fusion(model: object, val: object) -> None:
    """Late fusion of a text and an image embedding with weights 1 and 1 is the joint model's
    score sum, and with weights 1 and 0 its text query: the same metrics either way."""
    from planetloc.eval.evaluate import evaluate_split
    from planetloc.eval.fusion import embed_set, fused_metrics

    parts = [embed_set(model, val, "text"), embed_set(model, val, "image")]
    for weights, kind, how in (([1.0, 1.0], "joint", "sum"), ([1.0, 0.0], "text", None)):
        fused = fused_metrics(parts, weights, val)
        direct = evaluate_split(model, val, query=kind, joint_score=how)
        assert {k: fused[k] for k in direct} == pytest.approx(direct)
    near = fused_metrics(parts, [1.0, 0.5], val, m=5)
    assert near["candidates"] == 5 and near["queries"] == len(val.queries)


def test_a_registry_image_tower_reads_street_views(small_world: Manifest, tmp_path: Path) -> None:
    """``model.street_backbone`` puts a registry backbone's image tower (here the tiny CLIP)
    behind the street views: the view loss trains it, and it is saved, reloads and reads a
    panorama at its own square input size."""
    from planetloc.model.checkpoint import load_model
    from planetloc.model.towers import CLIPImageTower

    towers = []
    for steps in (1, 2):
        out = tmp_path / f"run{steps}"
        cfg = _street_config(
            small_world,
            out,
            steps=steps,
            **{"model.query": "image", "model.street_backbone": "tiny-clip"},
        )
        summary = train(cfg, progress=False)
        views = [r["loss_view"] for r in summary["history"] if "loss_view" in r]
        assert views and np.isfinite(views).all()
        model = load_model(out / "checkpoint.safetensors")
        assert isinstance(model.street_tower, CLIPImageTower)
        towers.append(model.street_tower.vision_model.embeddings.patch_embedding.weight)
    # Same seed, same start: only the second step can tell the two towers apart, so a frozen
    # or detached tower would come back identical.
    assert not torch.equal(towers[0], towers[1])
    model.eval()
    with torch.no_grad():
        emb = model.encode_street(torch.randint(0, 256, (2, 3, 32, 128), dtype=torch.uint8))
    assert emb.shape == (2, 32) and torch.isfinite(emb).all()
