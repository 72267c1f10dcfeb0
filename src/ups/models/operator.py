"""The latent one-step operator: a PDE-Transformer that maps z(t) to z(t + dt).

It is the first stage and the backbone of the surrogate; the diffusion model only
corrects its residual. The out-projection starts at zero, so the untrained operator
is the identity map (`z1 = z0`), which is already a sensible guess for a small time
step and keeps early training stable.

Levels: one per entry of `pdet.depths`, level `i` holding `depths[i]` pre-norm
transformer blocks with `pdet.heads_per_level()[i]` heads. There is no U-skip
between mirrored levels: the tokens keep one resolution throughout, so the residual
stream already carries level `i`'s output into every later level, and an extra
additive skip would only count it twice.

`TransformerBlock` is shared with the denoisers in `denoiser.py`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ups.config import PDETConfig

POS_EMB_STD = 0.02


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP over tokens [B, N, C]."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)
        hidden = max(1, int(round(dim * mlp_ratio)))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        x = x + self.proj_drop(self.proj(y.transpose(1, 2).reshape(b, n, c)))
        return x + self.mlp(self.norm2(x))


class LatentOperator(nn.Module):
    """forward(z [B, tokens, latent_dim]) -> z + delta, the predicted next latent state."""

    def __init__(self, pdet: PDETConfig, latent_dim: int, tokens: int):
        super().__init__()
        if pdet.input_dim is not None and pdet.input_dim != latent_dim:
            raise ValueError(f"operator.pdet.input_dim={pdet.input_dim} must equal latent.dim={latent_dim}")
        hidden = pdet.hidden_dim
        self.latent_dim, self.tokens = latent_dim, tokens
        self.in_proj = nn.Linear(latent_dim, hidden)
        self.pos_emb = nn.Parameter(torch.randn(tokens, hidden) * POS_EMB_STD)
        self.levels = nn.ModuleList(
            nn.Sequential(
                *(TransformerBlock(hidden, heads, pdet.mlp_ratio, pdet.dropout) for _ in range(depth))
            )
            for depth, heads in zip(pdet.depths, pdet.heads_per_level())
        )
        self.norm = nn.LayerNorm(hidden)
        self.out_proj = nn.Linear(hidden, latent_dim)
        # Zero delta at init: the untrained operator is the identity map.
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, z: Tensor) -> Tensor:
        if tuple(z.shape[-2:]) != (self.tokens, self.latent_dim):
            raise ValueError(
                f"operator built for latents [{self.tokens}, {self.latent_dim}] got {list(z.shape[-2:])}"
            )
        h = self.in_proj(z) + self.pos_emb
        for level in self.levels:
            h = level(h)
        delta = self.out_proj(self.norm(h))
        return z + delta.to(z.dtype)
