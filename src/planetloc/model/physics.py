"""The physical branch of PLANET: text-side projection and pixel-side signature heads.

Physical Semantic Projection: three learnable queries attend over the text tokens (padding
masked), one per physical property, and give ``t_color``, ``t_struc``, ``t_tex``. On the image
side, each standardised raw-pixel signature goes through a small MLP to the same space
(``f_k``). Consistency contrastive learning pulls ``t_k`` towards the ``f_k`` of its own tile.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BRANCHES = ("color", "struc", "tex")


class PhysicalSemanticProjection(nn.Module):
    """Query-based cross-attention from three learnable queries to the text tokens."""

    def __init__(self, dim: int, out_dim: int, heads: int = 4) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(len(BRANCHES), dim) * 0.02)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.heads = nn.ModuleDict({k: nn.Linear(dim, out_dim) for k in BRANCHES})

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        attended, _ = self.attn(q, tokens, tokens, key_padding_mask=~mask, need_weights=False)
        attended = self.norm(attended + q)
        return {
            k: F.normalize(self.heads[k](attended[:, i]), dim=-1) for i, k in enumerate(BRANCHES)
        }


class SignatureHeads(nn.Module):
    """One MLP per signature: standardised statistics -> the physical embedding space."""

    def __init__(self, dims: dict[str, int], out_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleDict(
            {
                k: nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
                for k, d in dims.items()
            }
        )
        for k, d in dims.items():
            self.register_buffer(f"mean_{k}", torch.zeros(d))
            self.register_buffer(f"std_{k}", torch.ones(d))

    def set_statistics(self, signatures: dict[str, torch.Tensor]) -> None:
        """Dataset-level standardisation, fitted on training tiles and saved with the model."""
        for k, v in signatures.items():
            getattr(self, f"mean_{k}").copy_(v.mean(0))
            getattr(self, f"std_{k}").copy_(v.std(0).clamp_min(1e-6))

    def forward(self, signatures: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for k, mlp in self.mlps.items():
            x = (signatures[k] - getattr(self, f"mean_{k}")) / getattr(self, f"std_{k}")
            out[k] = F.normalize(mlp(x), dim=-1)
        return out
