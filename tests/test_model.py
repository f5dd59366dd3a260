"""Backbones, the open_clip converter, the physical branch and the losses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from planetloc.errors import PlanetlocError
from planetloc.model.openclip import load_openclip
from planetloc.model.planet import ModelConfig, Planet
from planetloc.model.registry import list_backbones
from planetloc.model.towers import interpolate_positions
from planetloc.train.losses import planet_loss, symmetric_info_nce


def test_openclip_checkpoint_reproduces_openclip_embeddings(shared_dir: Path) -> None:
    fixture = shared_dir / "fixtures" / "openclip-tiny"
    model = load_openclip(fixture / "open_clip_model.pt", fixture / "open_clip_config.json")
    ref = torch.load(fixture / "reference_io.pt", weights_only=False)
    with torch.no_grad():
        text = model.get_text_features(input_ids=ref["token_ids"])
        image = model.get_image_features(pixel_values=ref["images"])
    text = getattr(text, "pooler_output", text)
    image = getattr(image, "pooler_output", image)
    assert (text - ref["text_embeds"]).abs().max() <= 1e-4
    assert (image - ref["image_embeds"]).abs().max() <= 1e-4


def test_converter_refuses_a_wrong_checkpoint(tmp_path: Path, shared_dir: Path) -> None:
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pt")
    config = shared_dir / "fixtures" / "openclip-tiny" / "open_clip_config.json"
    with pytest.raises(
        PlanetlocError, match=r"not an open_clip ViT checkpoint: missing 'token_embedding\.weight'"
    ):
        load_openclip(tmp_path / "bad.pt", config)
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(PlanetlocError, match="cannot read checkpoint"):
        load_openclip(tmp_path / "junk.pt", config)


def test_position_interpolation_keeps_ends_and_is_linear() -> None:
    table = torch.arange(77, dtype=torch.float32).unsqueeze(1).repeat(1, 4)
    wide = interpolate_positions(table, 248)
    assert wide.shape == (248, 4)
    assert wide[0, 0] == 0 and wide[-1, 0] == pytest.approx(76)
    diffs = wide[1:, 0] - wide[:-1, 0]
    assert torch.allclose(diffs, torch.full_like(diffs, 76 / 247), atol=1e-5)


def test_info_nce_on_hand_checked_inputs() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    log_scale = torch.tensor(math.log(10.0))
    # Perfectly aligned pairs: each row's CE is log(1 + e^-10).
    expected = math.log(1 + math.exp(-10))
    assert symmetric_info_nce(a, a, log_scale).item() == pytest.approx(
        expected, rel=1e-3
    )  # float32
    # Swapped pairs: CE = log(1 + e^10) in both directions.
    swapped = a.flip(0)
    assert symmetric_info_nce(a, swapped, log_scale).item() == pytest.approx(
        math.log(1 + math.exp(10)), rel=1e-5
    )
    # Asymmetric case: text->image and image->text differ, the loss is their mean.
    b = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=1)
    logits = 10 * a @ b.t()
    ce_rows = torch.nn.functional.cross_entropy(logits, torch.arange(2))
    ce_cols = torch.nn.functional.cross_entropy(logits.t(), torch.arange(2))
    assert symmetric_info_nce(a, b, log_scale).item() == pytest.approx(
        0.5 * (ce_rows + ce_cols).item()
    )


def test_planet_loss_adds_lambda_times_each_switched_on_branch() -> None:
    gen = torch.Generator().manual_seed(0)
    unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=gen), dim=-1)  # noqa: E731
    t, i = unit(6, 8), unit(6, 8)
    tp = {k: unit(6, 4) for k in ("color", "struc", "tex")}
    fp = {k: unit(6, 4) for k in ("color", "struc", "tex")}
    scales = {k: torch.tensor(2.0) for k in tp}
    ls = torch.tensor(3.0)
    zero = planet_loss(t, i, ls, tp, fp, scales, lambda_phy=0.0, branches=("color", "struc", "tex"))
    assert zero.total.item() == pytest.approx(symmetric_info_nce(t, i, ls).item())
    full = planet_loss(t, i, ls, tp, fp, scales, lambda_phy=0.3, branches=("color", "struc", "tex"))
    manual = zero.itc + 0.3 * sum(symmetric_info_nce(tp[k], fp[k], scales[k]) for k in tp)
    assert full.total.item() == pytest.approx(manual.item(), rel=1e-6)
    only_tex = planet_loss(t, i, ls, tp, fp, scales, lambda_phy=0.3, branches=("tex",))
    assert set(only_tex.phys) == {"tex"}
    assert only_tex.total.item() == pytest.approx(
        (zero.itc + 0.3 * full.phys["tex"]).item(), rel=1e-6
    )


def test_physical_projection_ignores_padding() -> None:
    torch.manual_seed(0)
    model = Planet(
        ModelConfig(backbone="tiny-bert-cnn", embed_dim=16, head_dim=16, phys_dim=8, heads=2)
    ).eval()
    from planetloc.model.towers import TextOutput

    tokens = torch.randn(1, 10, 64)
    mask = torch.tensor([[True] * 6 + [False] * 4])
    a = model.text_head(TextOutput(tokens=tokens, mask=mask, pooled=torch.zeros(1, 64)))
    noisy = tokens.clone()
    noisy[:, 6:] = 1e3 * torch.randn(1, 4, 64)
    b = model.text_head(TextOutput(tokens=noisy, mask=mask, pooled=torch.zeros(1, 64)))
    for k in a.phys:
        assert torch.allclose(a.phys[k], b.phys[k], atol=1e-5)
    assert torch.allclose(a.global_, b.global_, atol=1e-5)
    assert set(a.phys) == {"color", "struc", "tex"}


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def _write_clip_tokenizer(folder: Path, with_vocab: bool = True) -> None:
    """A byte-level CLIP BPE vocabulary with no merges: valid, tiny, and ours."""
    from transformers import CLIPTokenizer

    vocab = None
    if with_vocab:
        chars = _byte_symbols()
        vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
        vocab["<|startoftext|>"] = len(vocab)
        vocab["<|endoftext|>"] = len(vocab)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)


def _save_tiny_clip(folder: Path, *, with_vocab: bool = True) -> None:
    """A 1-layer CLIP and its tokenizer, saved like a hub download would be."""
    from transformers import CLIPConfig, CLIPModel

    layer = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    cfg = CLIPConfig(
        text_config={
            **layer,
            "vocab_size": 520,
            "max_position_embeddings": 77,
            "eos_token_id": 515,
            "bos_token_id": 514,
        },
        vision_config={**layer, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(folder)
    _write_clip_tokenizer(folder, with_vocab=with_vocab)


def test_locally_saved_clip_loads_offline_with_extended_positions(tmp_path: Path) -> None:
    _save_tiny_clip(tmp_path)
    model = Planet(
        ModelConfig(
            backbone="clip-vit-b32",
            text_source=str(tmp_path),
            max_tokens=248,
            embed_dim=16,
            head_dim=16,
            phys_dim=8,
            heads=2,
        )
    )
    assert model.text_tower.text_model.embeddings.position_embedding.weight.shape == (248, 32)
    long_text = "a " * 150
    enc, cut = model.tokenize(["short text", long_text])
    assert cut == [False, False] and enc["input_ids"].shape[1] > 77
    emb = model.encode_text(enc["input_ids"], enc["attention_mask"])
    assert emb.global_.shape == (2, 16)
    short = Planet(
        ModelConfig(
            backbone="clip-vit-b32",
            text_source=str(tmp_path),
            max_tokens=77,
            embed_dim=16,
            head_dim=16,
            phys_dim=8,
            heads=2,
        )
    )
    _, cut = short.tokenize(["short text", long_text])
    assert cut == [False, True]  # truncation is reported, never silent
    assert short.encode_image(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)).shape == (
        2,
        16,
    )


def test_empty_offline_tokenizer_is_refused(tmp_path: Path) -> None:
    _save_tiny_clip(tmp_path, with_vocab=False)
    with pytest.raises(PlanetlocError, match="has only 2 tokens: not a usable vocabulary"):
        Planet(ModelConfig(backbone="clip-vit-b32", text_source=str(tmp_path)))


def test_unknown_backbone_and_missing_hub_weights_are_clear_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert {"minilm-cnn", "clip-vit-l14-336", "siglip-base", "openclip"} <= set(list_backbones())
    with pytest.raises(PlanetlocError, match="unknown backbone 'resnet9000'"):
        Planet(ModelConfig(backbone="resnet9000"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        PlanetlocError, match="cannot load the tokenizer of 'openai/clip-vit-large-patch14-336'"
    ):
        Planet(ModelConfig(backbone="clip-vit-l14-336"))


def test_embedded_default_uses_the_real_minilm() -> None:
    model = Planet(ModelConfig())
    assert model.text_trunk_frozen
    enc, _ = model.tokenize(["I am standing beside a river.", "Tall glass towers line the street."])
    out = model.text_trunk(enc["input_ids"], enc["attention_mask"])
    assert out.pooled.shape == (2, 384)
    # The pretrained encoder separates these sentences; a random one would not score ~0.2-0.5.
    sim = torch.nn.functional.cosine_similarity(out.pooled[0], out.pooled[1], dim=0)
    assert -0.2 < sim < 0.7


def test_the_tile_tower_encodes_channels_last_on_a_cpu_and_trains_as_before() -> None:
    """Encoding (no gradient) on a CPU runs the convolutions on channels-last tensors and
    returns the NCHW computation's embedding up to rounding; training keeps NCHW, so its
    arithmetic is unchanged."""
    from planetloc.model.towers import TileCNN

    torch.manual_seed(0)
    tower = TileCNN(widths=(8, 16), image_size=32)
    pixels = torch.rand(4, 3, 32, 32)
    layouts: list[bool] = []
    tower.features[0].register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    encoded = {}
    for channels_last in (False, True):
        tower.cpu_channels_last = channels_last
        with torch.no_grad():
            encoded[channels_last] = tower(pixels)
    assert layouts == [False, True]  # the switch reaches the first convolution
    assert torch.allclose(encoded[True], encoded[False], atol=1e-5, rtol=1e-4)
    tower(pixels).square().mean().backward()  # training, with the switch on
    assert layouts[-1] is False and tower.features[0].weight.grad is not None
