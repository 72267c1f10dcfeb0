"""What each stage trains: its model and its loss — and nothing about the loop.

Each builder gets the data its `StageSpec.data` names (train and val sources).

Upstream models are loaded from the files their stage shipped (never built
fresh: a stage must not train on a random operator because a file was
missing — the runner checks the files before it gets here).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ups import stages
from ups.errors import ConfigError
from ups.models.build import build_diffusion, build_operator, build_steady_prior, build_student
from ups.models.consistency import consistency_distill_loss
from ups.models.denoiser import Condition, LeadCondition
from ups.models.diffusion import edm_loss
from ups.training.batches import LatentSource
from ups.pipeline.context import PipelineContext
from ups.training.loop import BatchSource, StageTask

RESIDUAL_STAT_ITEMS = 2048
RESIDUAL_CHUNK = 256  # items per forward pass when computing statistics or caching rollouts
LEAD_CACHE_MAX_BYTES = 2 * 2**30


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
    dcfg = ctx.cfg.diffusion
    if dcfg.lead_time:
        train, val = RolledLeadItems(train, operator), RolledLeadItems(val, operator)
        scale = train.step_scales(dcfg.sigma_data)
    else:
        scale = residual_scale(ctx, operator)
    factor = _on_device(scale, ctx.device)

    def loss(model, batch, gen, ema):
        x0, cond = residual_target(operator, batch, factor)
        return edm_loss(model, x0, cond, gen, dcfg)

    return StageTask(build_diffusion(ctx.cfg), loss, train, val, extra={"residual_scale": scale})


def build_consistency_task(ctx: PipelineContext, train: LatentSource, val: LatentSource) -> StageTask:
    operator, _ = ctx.load_upstream("operator", build_operator)
    teacher, teacher_file = ctx.load_upstream("diff_residual", build_diffusion)
    scale = teacher_file["extra"]["residual_scale"]
    factor = _on_device(scale, ctx.device)
    student = build_student(ctx.cfg)
    student.load_state_dict(teacher.state_dict())  # distillation starts from the teacher
    dcfg, ccfg = ctx.cfg.diffusion, ctx.cfg.consistency
    if dcfg.lead_time:
        train, val = RolledLeadItems(train, operator), RolledLeadItems(val, operator)

    def loss(model, batch, gen, ema):
        x0, cond = residual_target(operator, batch, factor)
        return consistency_distill_loss(model, ema.module, teacher, x0, cond, gen, dcfg, ccfg)

    return StageTask(student, loss, train, val, extra={"residual_scale": scale})


def build_steady_prior_task(ctx: PipelineContext, train: LatentSource, val: LatentSource) -> StageTask:
    dcfg = ctx.cfg.diffusion
    prior = build_steady_prior(ctx.cfg)
    mean, std = state_statistics(train)
    scale = prior.sigma_data / std

    def loss(model, batch, gen, ema):
        (z,) = batch
        return edm_loss(model, (z - mean) * scale, None, gen, dcfg)

    return StageTask(prior, loss, train, val,
                     extra={"state_mean": mean.cpu().tolist(), "state_scale": scale.cpu().tolist()})


@torch.no_grad()
def rolled_residuals(operator: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(residual, prediction) at every step of the operator's rollout from batch[0] along batch[1:].

    The rollout continues from the operator's own predictions, so the residual at step k is
    what an ensemble member meets k steps from a true state: the operator's compounded error,
    not only its one-step error. A pair (z0, z1) gives the one-step residual z1 - op(z0).
    The steps are stacked along the batch dimension.
    """
    z, *targets = batch
    residuals, preds = [], []
    for target in targets:
        z = operator(z)
        residuals.append(target - z)
        preds.append(z)
    return torch.cat(residuals), torch.cat(preds)


@torch.no_grad()
def state_statistics(src: LatentSource) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and std [tokens, dim] of the first train states (deterministic).

    The prior's latents are neither centred nor of one spread (on the quickstart their
    features' stds range from near 0 to 2.4, against the prior's sigma_data 1.0 and
    sigma_max 2.0), so its sampler would start from noise narrower than some features
    and far wider than others. Each feature is standardised to the prior's sigma_data
    once here, and the statistics ship with the weights. A feature that
    barely varies keeps a floor of 1e-3 x the largest std, so it is not blown up.
    """
    z = torch.cat([batch[0].float() for batch in first_batches(src, RESIDUAL_STAT_ITEMS)])
    std = z.std(0)
    return z.mean(0), std.clamp_min(1e-3 * float(std.max()))


def residual_target(operator: torch.nn.Module, batch: tuple[torch.Tensor, ...],
                    factor: float | torch.Tensor) -> tuple[torch.Tensor, Condition]:
    """(the scaled residual, its condition) of a batch: the prediction, and with a
    per-step `factor` [K] (`diffusion.lead_time`) also the step each residual is drawn for;
    such a batch is `RolledLeadItems`' (residual, prediction, step) rows."""
    if not isinstance(factor, torch.Tensor):
        residual, pred = rolled_residuals(operator, batch)
        return residual * factor, pred
    residual, pred, step = batch
    return residual * factor[step][:, None, None], LeadCondition(pred, step)


class RolledLeadItems:
    """Items (sequence, step) for a lead-time residual, the operator's rollouts computed once.

    Item i is sequence i // K of `sequences` at step i % K, so a shuffled epoch mixes
    trajectories, start times and steps; batches of all K steps of a few sequences
    trained far worse (on the quickstart, 100 epochs: CRPS 0.0116 against 0.0061).
    The operator is frozen, so its rollout along every sequence is computed here once
    (in chunks, deterministic: a resumed run recomputes the same) and held on the
    sequences' device; it is refused above `LEAD_CACHE_MAX_BYTES`.
    """

    def __init__(self, sequences: LatentSource, operator: torch.nn.Module):
        self.steps, self.device = sequences.horizon, sequences.device
        n = sequences.n_items
        probe = sequences.batch(torch.arange(min(n, 1), device=self.device))[0]
        need = 2 * n * self.steps * probe[0].numel() * 4
        if need > LEAD_CACHE_MAX_BYTES:
            raise ConfigError(
                f"a lead-time residual holds the operator's rollouts of its {n} sequences x {self.steps} steps: "
                f"{need / 2**30:.1f} GiB, above {LEAD_CACHE_MAX_BYTES / 2**30:.0f} GiB; lower "
                f"diffusion.train_rollout_steps or data.limit, or train with diffusion.lead_time: false")
        residuals, preds = [], []
        for batch in first_batches(sequences, n):
            residual, pred = rolled_residuals(operator, batch)
            residuals.append(_by_sequence(residual.float(), self.steps))
            preds.append(_by_sequence(pred.float(), self.steps))
        self.residual, self.pred = torch.cat(residuals), torch.cat(preds)  # [n, steps, tokens, dim]
        self.n_items = n * self.steps

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sequence, step = torch.div(idx, self.steps, rounding_mode="floor"), idx % self.steps
        return self.residual[sequence, step], self.pred[sequence, step], step

    def step_scales(self, sigma_data: float) -> list[float]:
        """sigma_data / std of each step's residual over the first sequences (`residual_scale`'s
        items): a lead-time residual grows along the rollout, so each step gets its own factor."""
        first = self.residual[:RESIDUAL_STAT_ITEMS].transpose(0, 1).reshape(self.steps, -1)
        return [float(sigma_data / max(std, 1e-8)) for std in first.std(dim=1).tolist()]


def _by_sequence(stacked: torch.Tensor, steps: int) -> torch.Tensor:
    """Step-major rows [steps * b, ...] as [b, steps, ...]."""
    return stacked.reshape(steps, -1, *stacked.shape[1:]).transpose(0, 1)


def _on_device(scale: float | list[float], device: torch.device) -> float | torch.Tensor:
    return torch.tensor(scale, dtype=torch.float32, device=device) if isinstance(scale, list) else float(scale)


@torch.no_grad()
def residual_scale(ctx: PipelineContext, operator: torch.nn.Module) -> float:
    """sigma_data / std of the residual the stage learns, over the first train items (deterministic).

    The diffusion model's preconditioning assumes data of spread sigma_data; the
    residual of a good operator is much smaller, so it is rescaled once here and
    the factor ships with the weights. (A lead-time residual gets one factor per step:
    `RolledLeadItems.step_scales`.)
    """
    src = ctx.sequences("train", ctx.horizon(stages.RESIDUAL_SEQUENCES))
    chunks = [rolled_residuals(operator, batch)[0].float().flatten()
              for batch in first_batches(src, RESIDUAL_STAT_ITEMS)]
    return float(ctx.cfg.diffusion.sigma_data / max(torch.cat(chunks).std().item(), 1e-8))


def first_batches(src: BatchSource, limit: int) -> Iterator[tuple[torch.Tensor, ...]]:
    """The first `limit` items of a batch source, in batches of `RESIDUAL_CHUNK` (deterministic)."""
    n = min(src.n_items, limit)
    for lo in range(0, n, RESIDUAL_CHUNK):
        yield src.batch(torch.arange(lo, min(lo + RESIDUAL_CHUNK, n), device=src.device))
