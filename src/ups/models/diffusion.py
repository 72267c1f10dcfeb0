"""EDM training loss and samplers for the residual diffusion model and the steady prior.

Every random draw here comes from the `torch.Generator` the caller passes, never
from the global RNG: the training loop saves that generator's state in its
resumable checkpoint, so a resumed run draws the same noise as the one that was
interrupted. Noise is drawn on the generator's device and moved to the data's; a
CPU generator's draws therefore do not depend on the accelerator that runs the
model, a CUDA generator avoids the copy.

Nothing here calls `.item()` or branches on tensor values, so the loss runs under
`torch.autocast` without host syncs. Dynamo cannot trace an explicit Generator, so
the random draws stay outside compiled code: compile the denoiser (its forward is
fullgraph-clean) or the noise-free `edm_loss_given_noise`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ups.config import DiffusionConfig
from ups.models.ema import unwrap

# Log-normal training noise levels (Karras et al. 2022, Table 1).
P_MEAN = -1.2
P_STD = 1.2
RHO = 7.0


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = RHO) -> Tensor:
    """n noise levels from sigma_max down to sigma_min (float32, both ends included).

    There is no trailing zero: samplers that end at sigma = 0 append it themselves,
    while consistency distillation needs a grid that stops at sigma_min. n = 1 gives
    [sigma_max].
    """
    if n < 1:
        raise ValueError(f"karras_sigmas needs n >= 1, got {n}")
    ramp = torch.linspace(0.0, 1.0, n, dtype=torch.float64)  # [0.] when n == 1
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    sigmas[0], sigmas[-1] = sigma_max, (sigma_min if n > 1 else sigma_max)
    return sigmas.float()


def randn(shape: Sequence[int], generator: torch.Generator, device: torch.device) -> Tensor:
    """Standard normal noise from `generator` only, placed on `device`."""
    noise = torch.randn(tuple(shape), generator=generator, device=generator.device)
    return noise.to(device)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def edm_noise(x0: Tensor, generator: torch.Generator, cfg: DiffusionConfig) -> tuple[Tensor, Tensor]:
    """The random part of `edm_loss`: per-sample sigma [B] and unit noise like x0.

    sigma ~ exp(N(P_MEAN, P_STD^2)), clamped to [cfg.sigma_min, cfg.sigma_max]: the
    samplers never ask for a noise level outside that range, so training there would
    spend capacity on inputs never seen; the ~6% of draws above sigma_max land on it,
    which also trains `sample_mean`'s single evaluation at sigma_max.
    """
    log_sigma = randn([x0.shape[0]], generator, x0.device) * P_STD + P_MEAN
    sigma = log_sigma.exp().clamp(cfg.sigma_min, cfg.sigma_max).to(x0.dtype)
    return sigma, randn(x0.shape, generator, x0.device).to(x0.dtype)


def edm_loss_given_noise(
    denoiser: nn.Module, x0: Tensor, cond: Optional[Tensor], sigma: Tensor, noise: Tensor
) -> Tensor:
    """The deterministic part of `edm_loss`; compiles with `fullgraph=True`.

    Weighted by (s^2 + sd^2) / (s sd)^2 with the denoiser's own sigma_data, so the
    weighting matches its preconditioning.
    """
    s = sigma.reshape(-1, *([1] * (x0.dim() - 1)))
    denoised = denoiser(x0 + s * noise, sigma, cond)
    sd = unwrap(denoiser).sigma_data
    weight = (s**2 + sd**2) / (s * sd) ** 2
    return (weight * (denoised.float() - x0.float()) ** 2).mean()


def edm_loss(
    denoiser: nn.Module,
    x0: Tensor,
    cond: Optional[Tensor],
    generator: torch.Generator,
    cfg: DiffusionConfig,
) -> Tensor:
    """EDM denoising loss (Karras et al. 2022), mean over the batch; noise from `generator` only.

    torch.compile cannot trace an explicit Generator (dynamo graph-breaks on it), so
    compile the denoiser — or `edm_loss_given_noise` — rather than this function.
    """
    sigma, noise = edm_noise(x0, generator, cfg)
    return edm_loss_given_noise(denoiser, x0, cond, sigma, noise)


def start_std(denoiser: nn.Module, sigma_max: float) -> float:
    """The spread a sampler starts from: that of data noised to sigma_max, sqrt(sigma_max^2 + sigma_data^2).

    Karras et al. (2022, Alg. 1) start from N(0, sigma_max^2 I), which is the noised data's
    spread when sigma_max >> sigma_data (their 80 against 0.5). Here sigma_max is 2.0, against
    the prior's sigma_data of 1.0: starting from sigma_max alone would begin the ODE at
    4/5 of the right variance, and the samples would end with about that fraction of the
    data's variance (`test_samplers_end_with_the_datas_variance_when_sigma_max_is_not_far_above_it`).
    """
    return math.hypot(sigma_max, unwrap(denoiser).sigma_data)


def _sigma_batch(value: float, batch: int, device: torch.device) -> Tensor:
    return torch.full((batch,), value, device=device)


@torch.no_grad()
def sample(
    denoiser: nn.Module,
    cond: Optional[Tensor],
    shape: Sequence[int],
    steps: Optional[int],
    cfg: DiffusionConfig,
    generator: torch.Generator,
) -> Tensor:
    """Deterministic Heun sampler (Karras et al. 2022, Alg. 1, no churn).

    Starts from `start_std` * N(0, I) drawn with `generator` and integrates the
    probability-flow ODE over `karras_sigmas(steps)` + [0]; the last step is Euler, so
    the denoiser runs 2 * steps - 1 times. `steps=None` uses `cfg.sample_steps`.
    """
    steps = cfg.sample_steps if steps is None else steps
    device = cond.device if cond is not None else model_device(denoiser)
    grid = karras_sigmas(steps, cfg.sigma_min, cfg.sigma_max).tolist() + [0.0]
    x = randn(shape, generator, device) * start_std(denoiser, grid[0])
    b = x.shape[0]
    for s, s_next in zip(grid[:-1], grid[1:]):
        d = (x - denoiser(x, _sigma_batch(s, b, device), cond).float()) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:  # Python floats: a fixed schedule, not data-dependent control flow
            d_next = (x_next - denoiser(x_next, _sigma_batch(s_next, b, device), cond).float()) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d_next)
        x = x_next
    return x


@torch.no_grad()
def sample_mean(
    denoiser: nn.Module,
    cond: Optional[Tensor],
    shape: Sequence[int],
    cfg: DiffusionConfig,
    sigma: Optional[float] = None,
) -> Tensor:
    """A deterministic estimate of E[x0 | cond]: one denoiser call at x = 0, sigma = sigma_max.

    The denoiser is trained to return E[x0 | x0 + sigma * n = x, cond]; when sigma is
    large against the residual's spread, x = 0 carries almost no information and the
    answer approaches the conditional mean — the MSE-optimal correction that
    evaluation adds to the operator's prediction. No randomness, one forward pass.
    """
    device = cond.device if cond is not None else model_device(denoiser)
    x = torch.zeros(tuple(shape), device=device)
    level = cfg.sigma_max if sigma is None else sigma
    return denoiser(x, _sigma_batch(level, x.shape[0], device), cond).float()
