"""Build every model from the config, and describe their shapes for checkpoint checks.

The stages and evaluation build models only through these functions, so a stage
that loads `operator.pt` gets the same architecture the operator stage trained.
`architecture(cfg)` is computed from the config alone (it builds nothing, so it
never touches the global RNG) and is stored in `metadata.json` and in checkpoints
to detect a config that no longer matches the weights.

Weights are initialised from the global torch RNG: seed it before building.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ups.config import Config
from ups.models.denoiser import TokenDenoiser
from ups.models.latent import LatentCodec
from ups.models.operator import LatentOperator

DENOISER_MLP_RATIO = 2.0
# The steady prior models latents of the normalised field, whose features have
# about unit variance (the codec's rows are orthonormal); the residual's smaller
# scale is `diffusion.sigma_data`, which does not apply here.
STEADY_PRIOR_SIGMA_DATA = 1.0
DENOISER_SHAPE_KEYS = (
    "latent_dim", "tokens", "hidden_dim", "depth", "num_heads",
    "mlp_ratio", "conditional", "parameterization",
)


def build_codec(cfg: Config, nx: int, mean: float, std: float) -> LatentCodec:
    """The codec for fields of size nx; with `latent.normalize: false`, mean/std are ignored (0, 1)."""
    if not cfg.latent.normalize:
        mean, std = 0.0, 1.0
    return LatentCodec(nx, cfg.latent.tokens, cfg.latent.dim, mean, std)


def build_operator(cfg: Config) -> LatentOperator:
    return LatentOperator(cfg.operator.pdet, cfg.latent.dim, cfg.latent.tokens)


def _diffusion_kwargs(cfg: Config, parameterization: str) -> dict[str, Any]:
    d = cfg.diffusion
    return dict(
        latent_dim=cfg.latent.dim,
        tokens=cfg.latent.tokens,
        hidden_dim=d.hidden_dim,
        depth=d.depth,
        num_heads=d.num_heads,
        conditional=True,
        sigma_data=d.sigma_data,
        parameterization=parameterization,
        sigma_min=d.sigma_min,
        mlp_ratio=DENOISER_MLP_RATIO,
        lead_steps=d.train_rollout_steps if d.lead_time else 0,
    )


def _steady_prior_kwargs(cfg: Config) -> dict[str, Any]:
    sp = cfg.steady_prior
    return dict(
        latent_dim=cfg.latent.dim,
        tokens=cfg.latent.tokens,
        hidden_dim=sp.hidden_dim,
        depth=sp.depth,
        num_heads=sp.num_heads,
        conditional=False,
        sigma_data=STEADY_PRIOR_SIGMA_DATA,
        parameterization="edm",
        sigma_min=cfg.diffusion.sigma_min,
        mlp_ratio=DENOISER_MLP_RATIO,
    )


def build_diffusion(cfg: Config) -> TokenDenoiser:
    """The residual denoiser, conditioned on the operator's prediction op(z0)."""
    return TokenDenoiser(**_diffusion_kwargs(cfg, "edm"))


def build_student(cfg: Config) -> TokenDenoiser:
    """The consistency student: the diffusion model's shapes and parameter names,
    so `student.load_state_dict(teacher.state_dict())` initialises it."""
    return TokenDenoiser(**_diffusion_kwargs(cfg, "consistency"))


def build_steady_prior(cfg: Config) -> TokenDenoiser:
    """An unconditional denoiser over single latent states."""
    return TokenDenoiser(**_steady_prior_kwargs(cfg))


def _denoiser_arch(kwargs: dict[str, Any]) -> dict[str, Any]:
    lead = {"lead_steps": kwargs["lead_steps"]} if kwargs.get("lead_steps") else {}  # absent from earlier files
    return {**{k: kwargs[k] for k in DENOISER_SHAPE_KEYS}, **lead}


def architecture(cfg: Config) -> dict[str, Any]:
    """Shape-relevant settings of every model, keyed by model name (JSON-ready)."""
    pdet = cfg.operator.pdet
    return {
        "latent": {"dim": cfg.latent.dim, "tokens": cfg.latent.tokens},
        "operator": {
            "latent_dim": cfg.latent.dim,
            "tokens": cfg.latent.tokens,
            "hidden_dim": pdet.hidden_dim,
            "depths": list(pdet.depths),
            "num_heads": pdet.heads_per_level(),
            "mlp_ratio": pdet.mlp_ratio,
        },
        "diffusion": _denoiser_arch(_diffusion_kwargs(cfg, "edm")),
        "student": _denoiser_arch(_diffusion_kwargs(cfg, "consistency")),
        "steady_prior": _denoiser_arch(_steady_prior_kwargs(cfg)),
    }


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "architecture",
    "build_codec",
    "build_diffusion",
    "build_operator",
    "build_steady_prior",
    "build_student",
    "param_count",
]
