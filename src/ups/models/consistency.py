"""Consistency distillation: a few-step student from the multi-step diffusion teacher.

The teacher's Heun sampler needs 2 * sample_steps - 1 network calls per residual;
the student (a `TokenDenoiser` with the "consistency" parameterisation, initialised
from the teacher's weights) maps any point of the teacher's ODE trajectory straight
to its end in one call (Song et al. 2023, Alg. 2, "CD"):

    n ~ U{0, .., N-2} on the grid sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min
    x_n      = x0 + sigma_n * z
    x_{n+1}  = one Heun step of the teacher's probability-flow ODE from sigma_n to sigma_{n+1}
    loss     = mean || student(x_n, sigma_n) - target(x_{n+1}, sigma_{n+1}) ||^2

with `target` the EMA copy of the student (no gradient through it or the teacher)
and N = consistency.teacher_steps. The distance is plain MSE (lambda = 1): latents
have no perceptual metric to borrow. All noise comes from the passed generator.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ups.config import ConsistencyConfig, DiffusionConfig
from ups.models.diffusion import karras_sigmas, model_device, randn, start_std


def _heun_step(teacher: nn.Module, x: Tensor, s: Tensor, s_next: Tensor, cond: Optional[Tensor]) -> Tensor:
    """One Heun step of dx/dsigma = (x - D(x, sigma)) / sigma; s, s_next are [B] and > 0."""
    s_, s_next_ = s[:, None, None], s_next[:, None, None]
    d = (x - teacher(x, s, cond).float()) / s_
    x_euler = x + (s_next_ - s_) * d
    d_next = (x_euler - teacher(x_euler, s_next, cond).float()) / s_next_
    return x + (s_next_ - s_) * 0.5 * (d + d_next)


def consistency_distill_loss(
    student: nn.Module,
    target: nn.Module,
    teacher: nn.Module,
    x0: Tensor,
    cond: Optional[Tensor],
    generator: torch.Generator,
    diffusion_cfg: DiffusionConfig,
    consistency_cfg: ConsistencyConfig,
) -> Tensor:
    """The CD loss for a batch x0 [B, tokens, dim]; gradients flow into `student` only.

    As with `edm_loss`, compile the models passed in, not this function (dynamo
    cannot trace the explicit generator).
    """
    grid = karras_sigmas(consistency_cfg.teacher_steps, diffusion_cfg.sigma_min, diffusion_cfg.sigma_max)
    grid = grid.to(x0.device)
    b = x0.shape[0]
    # Index drawn on the generator's device, like all noise, then moved.
    idx = torch.randint(0, len(grid) - 1, (b,), generator=generator, device=generator.device).to(x0.device)
    s, s_next = grid[idx], grid[idx + 1]
    x0 = x0.float()
    x_n = x0 + s[:, None, None] * randn(x0.shape, generator, x0.device)
    with torch.no_grad():
        x_next = _heun_step(teacher, x_n, s, s_next, cond)
        goal = target(x_next, s_next, cond).float()
    pred = student(x_n, s, cond).float()
    return ((pred - goal) ** 2).mean()


def consistency_sigmas(steps: int, sigma_min: float, sigma_max: float) -> list[float]:
    """The student's sampling noise levels: `steps` Karras levels from sigma_max, sigma_min excluded.

    sigma_min itself is useless as a step (the student is the identity there), so the
    grid has steps + 1 levels and drops its last; steps = 1 is the one-shot [sigma_max].
    """
    return karras_sigmas(steps + 1, sigma_min, sigma_max).tolist()[:-1]


@torch.no_grad()
def consistency_sample(
    student: nn.Module,
    cond: Optional[Tensor],
    shape: Sequence[int],
    steps: int,
    diffusion_cfg: DiffusionConfig,
    generator: torch.Generator,
) -> Tensor:
    """Multistep consistency sampling (Song et al. 2023, Alg. 1).

    x = f(s0 * z, sigma_max) with s0 = `diffusion.start_std`; then for each later level tau:
    x = f(x + sqrt(tau^2 - sigma_min^2) * z, tau). Callers pass
    `consistency.student_steps` as `steps`. For a noise-free estimate use
    `diffusion.sample_mean` with the student (its ODE endpoint from x = 0).
    """
    device = cond.device if cond is not None else model_device(student)
    levels = consistency_sigmas(steps, diffusion_cfg.sigma_min, diffusion_cfg.sigma_max)
    s_min = diffusion_cfg.sigma_min
    x = randn(shape, generator, device) * start_std(student, levels[0])
    b = x.shape[0]
    x = student(x, torch.full((b,), levels[0], device=device), cond).float()
    for tau in levels[1:]:
        x = x + max(tau**2 - s_min**2, 0.0) ** 0.5 * randn(shape, generator, device)
        x = student(x, torch.full((b,), tau, device=device), cond).float()
    return x
