"""What each stage trains: its model and its loss — and nothing about the loop.

Each builder gets the data its `StageSpec.data` names (train and val sources).

Upstream models are loaded from the files their stage shipped (never built
fresh: a stage must not train on a random operator because a file was
missing — the runner checks the files before it gets here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ups.models.build import build_diffusion, build_operator, build_steady_prior, build_student
from ups.models.consistency import consistency_distill_loss
from ups.models.diffusion import edm_loss
from ups.training.batches import LatentSource
from ups.pipeline.context import PipelineContext
from ups.training.loop import StageTask

RESIDUAL_STAT_ITEMS = 2048


def build_operator_task(ctx: PipelineContext, train: LatentSource, val: LatentSource) -> StageTask:
    return StageTask(build_operator(ctx.cfg), rollout_loss, train, val)


def rollout_loss(model, batch, gen=None, ema=None):
    """MSE of an autoregressive rollout from batch[0] against batch[1:], averaged over steps.

    Gradients flow through every step (one step: plain teacher forcing), so the operator
    learns to correct the errors its own earlier steps make, which one-step training never shows it.
    """
    z, *targets = batch
    total = 0.0
    for target in targets:
        z = model(z).float()
        total = total + F.mse_loss(z, target.float())
    return total / len(targets)


def build_diffusion_task(ctx: PipelineContext, train: LatentSource, val: LatentSource) -> StageTask:
    operator, _ = ctx.load_upstream("operator", build_operator)
    scale = residual_scale(ctx, operator)
    dcfg = ctx.cfg.diffusion

    def loss(model, batch, gen, ema):
        z0, z1 = batch
        with torch.no_grad():
            pred = operator(z0)
        return edm_loss(model, (z1 - pred) * scale, pred, gen, dcfg)

    return StageTask(build_diffusion(ctx.cfg), loss, train, val, extra={"residual_scale": scale})


def build_consistency_task(ctx: PipelineContext, train: LatentSource, val: LatentSource) -> StageTask:
    operator, _ = ctx.load_upstream("operator", build_operator)
    teacher, teacher_file = ctx.load_upstream("diff_residual", build_diffusion)
    scale = float(teacher_file["extra"]["residual_scale"])
    student = build_student(ctx.cfg)
    student.load_state_dict(teacher.state_dict())  # distillation starts from the teacher
    dcfg, ccfg = ctx.cfg.diffusion, ctx.cfg.consistency

    def loss(model, batch, gen, ema):
        z0, z1 = batch
        with torch.no_grad():
            pred = operator(z0)
        return consistency_distill_loss(model, ema.module, teacher, (z1 - pred) * scale, pred, gen, dcfg, ccfg)

    return StageTask(student, loss, train, val, extra={"residual_scale": scale})


def build_steady_prior_task(ctx: PipelineContext, train: LatentSource, val: LatentSource) -> StageTask:
    dcfg = ctx.cfg.diffusion

    def loss(model, batch, gen, ema):
        (z,) = batch
        return edm_loss(model, z, None, gen, dcfg)

    return StageTask(build_steady_prior(ctx.cfg), loss, train, val)


@torch.no_grad()
def residual_scale(ctx: PipelineContext, operator: torch.nn.Module) -> float:
    """sigma_data / std of the operator's residual, over the first train items (deterministic).

    The diffusion model's preconditioning assumes data of spread sigma_data; the
    residual of a good operator is much smaller, so it is rescaled once here and
    the factor ships with the weights.
    """
    src = ctx.pairs("train")
    n = min(src.n_items, RESIDUAL_STAT_ITEMS)
    chunks = []
    for lo in range(0, n, 256):
        z0, z1 = src.batch(torch.arange(lo, min(lo + 256, n), device=ctx.device))
        chunks.append((z1 - operator(z0)).float().flatten())
    std = torch.cat(chunks).std().item()
    return float(ctx.cfg.diffusion.sigma_data / max(std, 1e-8))
