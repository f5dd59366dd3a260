"""Physical signatures on constructed images, and retrieval metrics on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planetloc.eval.metrics import recall_at_k, retrieval_metrics
from planetloc.model.signatures import (
    SignatureScaler,
    color_histogram,
    orientation_histogram,
    physical_signatures,
    radial_spectrum,
)
from planetloc.ranking import rank_of


def test_pure_red_tile_peaks_in_the_top_red_bin() -> None:
    img = torch.zeros(1, 3, 32, 32)
    img[:, 0] = 1.0
    hist = color_histogram(img, bins=8).view(3, 8)
    assert hist[0, 7] == pytest.approx(1.0)
    assert hist[1, 0] == pytest.approx(1.0) and hist[2, 0] == pytest.approx(1.0)
    assert torch.allclose(hist.sum(1), torch.ones(3))


def test_uint8_and_float_inputs_agree() -> None:
    rng = np.random.default_rng(0)
    img8 = torch.from_numpy(rng.integers(0, 256, size=(2, 3, 24, 24), dtype=np.uint8))
    a = physical_signatures(img8)
    b = physical_signatures(img8.float() / 255)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5)


def test_vertical_stripes_give_one_orientation_peak_and_rotation_moves_it() -> None:
    x = torch.arange(64).float()
    stripes = (torch.sin(x / 2) > 0).float()
    vertical = stripes.view(1, 1, 1, 64).expand(1, 3, 64, 64)
    hist = orientation_histogram(vertical, bins=18)[0]
    # Vertical stripes change along x: the gradient points along 0 degrees (bin 0 or 17).
    assert hist[0] + hist[17] > 0.9
    horizontal = vertical.transpose(2, 3)
    hist_h = orientation_histogram(horizontal, bins=18)[0]
    assert hist_h[8] + hist_h[9] > 0.9  # 90 degrees
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        orientation_histogram(torch.zeros(3, 8, 8))


def test_noise_and_flat_tiles_differ_in_the_spectrum() -> None:
    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, 64, 64, generator=gen)
    smooth = torch.nn.functional.avg_pool2d(noise, 9, stride=1, padding=4)
    flat = torch.full((1, 3, 64, 64), 0.5) + 0.001 * torch.rand(1, 3, 64, 64, generator=gen)
    s_noise, s_smooth, s_flat = (radial_spectrum(t, bins=8)[0] for t in (noise, smooth, flat))
    assert s_noise[-1] > s_flat[-1] + 3  # orders of magnitude more high-frequency power
    assert s_noise[-1] - s_noise[1] > s_smooth[-1] - s_smooth[1] + 1  # smoothing tilts the slope
    assert s_noise.shape == (8,)


def _reference_signatures(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The signatures straight from their definitions: Sobel by convolution, the full
    two-sided spectrum, one bincount per histogram (float64 weights)."""
    x = x.float() / 255
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    b = x.shape[0]
    idx = (x * 16).long().clamp_max(15).flatten(2)
    color = (
        torch.stack([torch.stack([torch.bincount(c, minlength=16) for c in img]) for img in idx])
        .float()
        .flatten(1)
        / idx.shape[-1]
    )
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    gx = torch.nn.functional.conv2d(gray, kx.view(1, 1, 3, 3)).flatten(1)
    gy = torch.nn.functional.conv2d(gray, kx.t().reshape(1, 1, 3, 3)).flatten(1)
    pos = torch.remainder(torch.atan2(gy, gx), np.pi) / np.pi * 18 - 0.5
    lo = torch.floor(pos)
    mag = torch.sqrt(gx**2 + gy**2).double()
    struc = torch.zeros(b, 18, dtype=torch.float64)
    for i in range(b):
        lo_i = torch.remainder(lo[i].long(), 18)
        struc[i] += torch.bincount(lo_i, weights=mag[i] * (1 - (pos - lo)[i]), minlength=18)
        struc[i] += torch.bincount((lo_i + 1) % 18, weights=mag[i] * (pos - lo)[i], minlength=18)
    struc = (struc / struc.sum(1, keepdim=True)).float()
    g = gray[:, 0] - gray[:, 0].mean(dim=(1, 2), keepdim=True)
    h, w = g.shape[-2:]
    win = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    power = torch.fft.fft2(g * win).abs() ** 2 / (h * w)
    radius = torch.sqrt(torch.fft.fftfreq(h).view(-1, 1) ** 2 + torch.fft.fftfreq(w) ** 2) / 0.5
    ring = (radius * 16).long()
    logp = torch.log10(power + 1e-10)
    tex = torch.stack(
        [
            torch.stack([logp[i][(ring == r) & (radius > 0)].mean() for r in range(16)])
            for i in range(b)
        ]
    ).nan_to_num(0.0)  # a ring no frequency falls in (small tiles) reads 0
    return {"color": color, "struc": struc, "tex": tex}


@pytest.mark.parametrize("shape", [(3, 3, 32, 32), (2, 3, 21, 34), (2, 3, 40, 17)])
def test_signatures_match_their_definitions(shape: tuple[int, ...]) -> None:
    # The batched code takes shortcuts (a byte lookup, shifted differences for Sobel, the
    # half spectrum of a real image); odd and even sides check the half spectrum's weights.
    rng = np.random.default_rng(1)
    img = torch.from_numpy(rng.integers(0, 256, size=shape, dtype=np.uint8))
    want = _reference_signatures(img)
    for given in (img, img.float() / 255):  # bytes take the lookup, floats the arithmetic
        got = physical_signatures(given)
        assert torch.equal(got["color"], want["color"])
        assert torch.allclose(got["struc"], want["struc"], atol=1e-6)
        assert torch.allclose(got["tex"], want["tex"], atol=1e-4)


def test_scaler_standardises_each_signature() -> None:
    sigs = physical_signatures(torch.rand(16, 3, 32, 32))
    scaled = SignatureScaler.fit(sigs).transform(sigs)
    for v in scaled.values():
        assert torch.allclose(v.mean(0), torch.zeros(v.shape[1]), atol=1e-4)


def test_ranks_and_recall_on_a_hand_made_matrix() -> None:
    scores = np.array(
        [
            [0.9, 0.1, 0.0, 0.2],  # true 0: rank 0
            [0.5, 0.4, 0.6, 0.1],  # true 1: two above -> rank 2
            [0.3, 0.3, 0.3, 0.3],  # true 3: all tied -> lower rows first -> rank 3
            [0.3, 0.3, 0.3, 0.3],  # true 0: all tied -> rank 0
        ]
    )
    ranks = rank_of(scores, np.array([0, 1, 3, 0]))
    assert ranks.tolist() == [0, 2, 3, 0]
    assert recall_at_k(ranks, (1, 3, 4)) == {"R@1": 50.0, "R@3": 75.0, "R@4": 100.0}
    with pytest.raises(ValueError, match="outside the gallery"):
        retrieval_metrics(scores, np.array([0, 1, 4, 0]), np.zeros((4, 2)))
