"""A preconditioned token denoiser: the diffusion teacher, its consistency student, the steady prior.

One class serves all three so that the student can be initialised from the teacher
with a plain `load_state_dict` — the parameterisations differ only in the scalar
coefficients below, never in parameter names or shapes.

    D(x, sigma, cond) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma), cond)

- `"edm"` (Karras et al. 2022, Table 1): c_skip = sd^2 / (s^2 + sd^2),
  c_out = s sd / sqrt(s^2 + sd^2), c_in = 1 / sqrt(s^2 + sd^2), c_noise = ln(s) / 4.
- `"consistency"` (Song et al. 2023, App. C): c_skip = sd^2 / ((s - s_min)^2 + sd^2),
  c_out = (s - s_min) sd / sqrt(s^2 + sd^2); c_in and c_noise as above. At
  s = s_min, c_skip is exactly 1 and c_out exactly 0, so D(x, s_min) == x bit for bit
  (the consistency boundary condition).

F is a small transformer over tokens. When conditional, the (scaled) noisy tokens
are concatenated with the condition tokens along features; an embedding of
c_noise is added to every token. A residual model of the operator's rollout error
(`lead_steps` > 0) is also told the rollout step it is drawn for: its condition is a
`LeadCondition`, and a learned offset per step is added to the condition tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Union

import torch
from torch import Tensor, nn

from ups.models.operator import POS_EMB_STD, TransformerBlock

Parameterization = Literal["edm", "consistency"]
PARAMETERIZATIONS = ("edm", "consistency")
NOISE_FEATURES = 32
# c_noise = ln(sigma)/4 spans about [-1.6, 0.2] for the sigmas used here; frequencies
# from 1 to 64 resolve that range finely without aliasing the ends onto each other.
NOISE_MAX_FREQ = 64.0


@dataclass(frozen=True)
class LeadCondition:
    """The condition of a lead-time residual: the operator's k-step prediction [B, tokens, dim]
    and k - 1 [B] (0 is one step from a true state). Passed wherever a condition tensor goes."""

    pred: Tensor
    step: Tensor

    @property
    def device(self) -> torch.device:
        return self.pred.device

    @property
    def shape(self) -> torch.Size:
        return self.pred.shape


Condition = Union[Tensor, LeadCondition]


def noise_frequencies(n_features: int = NOISE_FEATURES) -> Tensor:
    log_freqs = torch.linspace(0.0, math.log(NOISE_MAX_FREQ), n_features // 2, dtype=torch.float64)
    return log_freqs.exp().float()


class TokenDenoiser(nn.Module):
    """forward(x [B, tokens, latent_dim], sigma [B], cond [B, tokens, latent_dim] | LeadCondition | None)."""

    def __init__(
        self,
        latent_dim: int,
        tokens: int,
        hidden_dim: int,
        depth: int,
        num_heads: int,
        conditional: bool,
        sigma_data: float,
        parameterization: Parameterization = "edm",
        sigma_min: float = 0.002,
        mlp_ratio: float = 2.0,
        lead_steps: int = 0,
    ):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
        self.latent_dim, self.tokens, self.hidden_dim = latent_dim, tokens, hidden_dim
        self.depth, self.num_heads, self.mlp_ratio = depth, num_heads, mlp_ratio
        self.conditional = conditional
        self.sigma_data, self.sigma_min = float(sigma_data), float(sigma_min)
        self.parameterization = parameterization
        self.lead_steps = lead_steps
        if lead_steps and not conditional:
            raise ValueError("a lead-time denoiser must be conditional")
        self.in_proj = nn.Linear(latent_dim * (2 if conditional else 1), hidden_dim)
        self.pos_emb = nn.Parameter(torch.randn(tokens, hidden_dim) * POS_EMB_STD)
        self.register_buffer("noise_freqs", noise_frequencies(), persistent=False)
        self.noise_mlp = nn.Sequential(
            nn.Linear(NOISE_FEATURES, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim)
        )
        self.blocks = nn.Sequential(
            *(TransformerBlock(hidden_dim, num_heads, mlp_ratio) for _ in range(depth))
        )
        if lead_steps:  # created only then: files of one-step residuals keep their parameter names
            self.lead_emb = nn.Parameter(torch.zeros(lead_steps, tokens, latent_dim))
        self.norm = nn.LayerNorm(hidden_dim)
        self.out_proj = nn.Linear(hidden_dim, latent_dim)
        # F = 0 at init: the EDM denoiser starts as the Wiener-like c_skip * x.
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def describe(self) -> dict:
        """Shape-relevant settings, for a checkpoint/config mismatch check."""
        lead = {"lead_steps": self.lead_steps} if self.lead_steps else {}  # absent from earlier files
        return {**lead,
            "latent_dim": self.latent_dim,
            "tokens": self.tokens,
            "hidden_dim": self.hidden_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "conditional": self.conditional,
            "parameterization": self.parameterization,
        }

    def coefficients(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) for a sigma tensor of any shape."""
        sd = self.sigma_data
        total = sigma**2 + sd**2
        c_in = torch.rsqrt(total)
        c_noise = torch.log(sigma) / 4
        if self.parameterization == "edm":
            return sd**2 / total, sigma * sd * c_in, c_in, c_noise
        offset = sigma - self.sigma_min
        return sd**2 / (offset**2 + sd**2), offset * sd * c_in, c_in, c_noise

    def forward(self, x: Tensor, sigma: Tensor, cond: Optional[Condition] = None) -> Tensor:
        if tuple(x.shape[-2:]) != (self.tokens, self.latent_dim):
            raise ValueError(
                f"denoiser built for latents [{self.tokens}, {self.latent_dim}] got {list(x.shape[-2:])}"
            )
        if self.conditional == (cond is None):
            need = "needs a condition" if self.conditional else "is unconditional and takes no condition"
            raise ValueError(f"this denoiser {need}")
        step = None
        if isinstance(cond, LeadCondition):
            cond, step = cond.pred, cond.step
        if self.lead_steps and step is None:
            raise ValueError("this denoiser draws a rollout step's residual: pass a LeadCondition")
        if step is not None and not self.lead_steps:
            raise ValueError("this denoiser draws one-step residuals and takes no rollout step")
        sigma = sigma.to(x.dtype).reshape(-1)
        c_skip, c_out, c_in, c_noise = (c[:, None, None] for c in self.coefficients(sigma))
        h = c_in * x
        if step is not None:  # the step's own offset of the condition, learned per token and feature
            cond = cond + self.lead_emb[step.reshape(-1)]
        if cond is not None:
            h = torch.cat([h, cond.to(x.dtype)], dim=-1)
        angles = c_noise[:, :, 0] * self.noise_freqs.to(x.dtype)
        emb = self.noise_mlp(torch.cat([angles.cos(), angles.sin()], dim=-1))
        h = self.in_proj(h) + self.pos_emb + emb[:, None, :]
        f = self.out_proj(self.norm(self.blocks(h))).to(x.dtype)
        return c_skip * x + c_out * f
