"""Contrastive losses: PLANET's L = L_itc + lambda * (L_color + L_struc + L_tex), and the
cross-view losses for street-image and joint (text + image) queries."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = 100.0


def symmetric_info_nce(a: torch.Tensor, b: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between row-aligned unit vectors ``a`` and ``b`` (B, D).

    Row i of ``a`` and row i of ``b`` are a positive pair, every other row a negative; the
    temperature is learnable as exp(log_scale), capped at 100 as in CLIP.
    """
    return info_nce_on_scores(a @ b.t(), log_scale)


def info_nce_on_scores(scores: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE on a (B, B) query x tile score matrix whose diagonal holds positives."""
    scale = log_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * scores
    labels = torch.arange(scores.shape[0], device=scores.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


@dataclass
class LossParts:
    total: torch.Tensor
    itc: torch.Tensor
    phys: dict[str, torch.Tensor]

    extra: dict[str, torch.Tensor] | None = None  # view / joint losses of cross-view runs

    def as_floats(self) -> dict[str, float]:
        out = {"loss": float(self.total.detach()), "loss_itc": float(self.itc.detach())}
        out.update({f"loss_{k}": float(v.detach()) for k, v in self.phys.items()})
        out.update({f"loss_{k}": float(v.detach()) for k, v in (self.extra or {}).items()})
        return out


def planet_loss(
    text_global: torch.Tensor,
    image_global: torch.Tensor,
    log_scale: torch.Tensor,
    text_phys: dict[str, torch.Tensor],
    tile_phys: dict[str, torch.Tensor],
    phys_log_scales: dict[str, torch.Tensor],
    *,
    lambda_phy: float,
    branches: tuple[str, ...],
) -> LossParts:
    """The full objective on one (global) batch. With ``lambda_phy == 0`` it is CLIP's."""
    itc = symmetric_info_nce(text_global, image_global, log_scale)
    phys = {k: symmetric_info_nce(text_phys[k], tile_phys[k], phys_log_scales[k]) for k in branches}
    total = itc + lambda_phy * sum(phys.values()) if phys and lambda_phy > 0 else itc
    return LossParts(total=total, itc=itc, phys=phys)
