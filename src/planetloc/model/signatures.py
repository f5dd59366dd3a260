"""Physical Signature Mining: colour, structure and texture statistics of raw tile pixels.

Computed from pixels, not from any encoder, batched in torch:

* colour: per-channel histograms (``color_bins`` bins per channel);
* structure: gradient-orientation histogram weighted by gradient magnitude over [0, 180)
  degrees (a rose diagram of edges: street grids give sharp peaks, organic layouts flat ones);
* texture: radially averaged log power spectrum (vegetation is rough, water and asphalt smooth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SignatureConfig:
    color_bins: int = 16
    orientation_bins: int = 18
    spectrum_bins: int = 16
    # Signatures are statistics of the whole tile: measured on it at most this many pixels
    # across (larger tiles are shrunk first, with antialiasing), they cost the same whatever
    # size the image tower reads.
    max_size: int = 128

    @property
    def dims(self) -> dict[str, int]:
        return {
            "color": 3 * self.color_bins,
            "struc": self.orientation_bins,
            "tex": self.spectrum_bins,
        }


def _check_shape(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")


def _check_images(images: torch.Tensor) -> torch.Tensor:
    _check_shape(images)
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float()


def color_histogram(images: torch.Tensor, bins: int = 16) -> torch.Tensor:
    """(B, 3*bins) per-channel histograms of pixel values in [0, 1], each summing to 1."""
    _check_shape(images)
    if images.dtype == torch.uint8:
        # The bin of every byte value once, then a lookup: the same bins as the float path
        # without the float arithmetic on every pixel.
        lut = _color_bins(torch.arange(256, device=images.device).float() / 255.0, bins)
        idx = lut[images.long()]
    else:
        idx = _color_bins(_check_images(images), bins)
    b, c = idx.shape[:2]
    idx = idx.flatten(2).view(b * c, -1)
    # Counts of up to 2**24 pixels per cell are exact in float32; a scatter into (image x
    # channel, bin) rows is several times faster than one bincount over all of them.
    ones = torch.ones((), device=idx.device).expand(idx.shape)
    hist = torch.zeros(b * c, bins, device=idx.device).scatter_add_(1, idx, ones)
    return (hist / idx.shape[-1]).view(b, c * bins)


def _color_bins(x: torch.Tensor, bins: int) -> torch.Tensor:
    return (x.clamp(0, 1) * bins).long().clamp_max(bins - 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def _sobel(gray: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical 3x3 Sobel responses of (B, 1, H, W), valid part only.

    Written as shifted differences: a one-channel ``conv2d`` is many times slower on CPU.
    """
    dx = gray[..., :, 2:] - gray[..., :, :-2]
    gx = dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]
    dy = gray[..., 2:, :] - gray[..., :-2, :]
    gy = dy[..., :, :-2] + 2 * dy[..., :, 1:-1] + dy[..., :, 2:]
    return gx, gy


def orientation_histogram(images: torch.Tensor, bins: int = 18) -> torch.Tensor:
    """(B, bins) magnitude-weighted histogram of edge orientations in [0, 180), sums to 1.

    Orientation is that of the gradient, folded to [0, 180) degrees, so a line and its
    reverse count alike. Each pixel's weight is split linearly between its two nearest bins
    so that small rotations change the histogram smoothly.
    """
    return _orientation(_gray(_check_images(images)), bins)


def _orientation(gray: torch.Tensor, bins: int) -> torch.Tensor:
    gx, gy = _sobel(gray)
    mag = torch.sqrt(gx**2 + gy**2).flatten(1)
    theta = torch.remainder(torch.atan2(gy, gx), math.pi).flatten(1)  # [0, pi)
    pos = theta * (bins / math.pi) - 0.5
    lo = torch.floor(pos)
    frac = pos - lo
    lo_idx = torch.remainder(lo.long(), bins)
    hi_idx = torch.remainder(lo_idx + 1, bins)
    hist = torch.zeros(gray.shape[0], bins, dtype=torch.float64, device=gray.device)
    hist.scatter_add_(1, lo_idx, (mag * (1 - frac)).double())
    hist.scatter_add_(1, hi_idx, (mag * frac).double())
    hist = hist.float()
    return hist / hist.sum(1, keepdim=True).clamp_min(1e-8)


def radial_spectrum(images: torch.Tensor, bins: int = 16) -> torch.Tensor:
    """(B, bins) radially averaged log power spectrum of the grey image, DC excluded.

    Bins are equal rings of normalised spatial frequency from 0 to Nyquist; each value is
    the mean log10 power in its ring, so rough surfaces lift the high-frequency end.
    """
    return _spectrum(_gray(_check_images(images)), bins)


def _spectrum(gray: torch.Tensor, bins: int) -> torch.Tensor:
    gray = gray[:, 0]
    gray = gray - gray.mean(dim=(1, 2), keepdim=True)
    h, w = gray.shape[-2:]
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    # The spectrum of a real image is symmetric, so the half rfft2 returns is enough: every
    # column but the first (and the Nyquist one of an even width) stands for two.
    spec = torch.fft.rfft2(gray * window.to(gray.device))
    power = (spec.real**2 + spec.imag**2) / (h * w)
    fy = torch.fft.fftfreq(h, device=gray.device).view(-1, 1)
    fx = torch.fft.rfftfreq(w, device=gray.device).view(1, -1)
    twice = torch.full((fx.shape[1],), 2.0, device=gray.device)
    twice[0] = 1.0
    if w % 2 == 0:
        twice[-1] = 1.0
    radius = torch.sqrt(fx**2 + fy**2) / 0.5  # 1.0 at Nyquist along an axis
    ring = (radius * bins).long()
    weight = (((ring < bins) & (radius > 0)) * twice).flatten()
    ring = ring.clamp_max(bins - 1).flatten()
    logp = torch.log10(power.flatten(1) + 1e-10)
    sums = torch.zeros(gray.shape[0], bins, device=gray.device)
    sums.scatter_add_(1, ring.expand_as(logp), logp * weight)
    counts = torch.zeros(bins, device=gray.device).scatter_add_(0, ring, weight)
    return sums / counts.clamp_min(1)


def _at_most(images: torch.Tensor, size: int) -> torch.Tensor:
    """``images`` shrunk so that neither side exceeds ``size`` (unchanged when it fits)."""
    h, w = images.shape[-2:]
    if max(h, w) <= size:
        return images
    scale = size / max(h, w)
    x = _check_images(images)
    out = torch.nn.functional.interpolate(
        x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True
    )
    return out


def physical_signatures(
    images: torch.Tensor, cfg: SignatureConfig | None = None
) -> dict[str, torch.Tensor]:
    """All three signatures of a batch: ``{"color": ..., "struc": ..., "tex": ...}``."""
    cfg = cfg or SignatureConfig()
    images = _at_most(images, cfg.max_size)
    gray = _gray(_check_images(images))  # shared by the structure and texture signatures
    return {
        "color": color_histogram(images, cfg.color_bins),
        "struc": _orientation(gray, cfg.orientation_bins),
        "tex": _spectrum(gray, cfg.spectrum_bins),
    }


@dataclass
class SignatureScaler:
    """Dataset-level standardisation of each signature (fit on the training tiles)."""

    mean: dict[str, torch.Tensor]
    std: dict[str, torch.Tensor]

    @classmethod
    def fit(cls, signatures: dict[str, torch.Tensor]) -> SignatureScaler:
        return cls(
            mean={k: v.mean(0) for k, v in signatures.items()},
            std={k: v.std(0).clamp_min(1e-6) for k, v in signatures.items()},
        )

    def transform(self, signatures: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: (v - self.mean[k]) / self.std[k] for k, v in signatures.items()}
