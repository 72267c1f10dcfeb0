"""Ensembles of sampled rollouts: what the diffusion residual and its consistency student add.

The operator is deterministic; the residual model is a distribution over what it
gets wrong. Scoring that distribution by its mean alone (as `operator+diffusion`
does) cannot show what sampling buys, so each of `eval.ensemble_size` members
rolls out on its own: at every step the operator predicts, a residual is drawn
given that prediction, and the member continues from the sum. A lead-time residual
(`diffusion.lead_time`: the operator's k-step error, told k) is instead drawn for each
step of the operator's own rollout and added to it, never rolled on from. Three
methods run on the same samples, scored by `ups.eval.probabilistic`:

- `operator`: one member, no draw; its CRPS is its MAE;
- `diff_residual`: the teacher, Heun sampler at `diffusion.sample_steps`;
- `consistency_distill`: the student, `consistency.student_steps` steps.

The denoiser's calls are counted (a forward pre-hook), not computed from a
formula, and the wall time of the draws is measured on the evaluation device
(synchronised on CUDA), per drawn residual and per sampled trajectory.
Every draw comes from a generator seeded with `eval.seed`: a report is
reproducible.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ups.config import Config
from ups.data.pdebench import FieldSplit
from ups.errors import ConfigError
from ups.eval.evaluation import MODEL_CHUNK, plan_rollout, plot_steps
from ups.eval.loading import Models, Sampler, check_lead_steps, residual_condition
from ups.eval.probabilistic import EnsembleAccumulator
from ups.models.consistency import consistency_sample
from ups.models.diffusion import sample

OPERATOR, TEACHER, STUDENT = "operator", "diff_residual", "consistency_distill"
MEMBER_BATCH = 256  # latent trajectories per forward pass (samples x members)

Draw = Callable[[Tensor, torch.Generator, int], Tensor]  # (prediction, generator, 0-based step) -> residual


@dataclass
class MethodStats:
    """One method's scores over the evaluated samples, and what its draws cost."""

    members: int
    overall: dict[str, float]
    curves: dict[str, list[float]]
    denoiser_evals_per_draw: float = 0.0
    seconds_per_draw: float = 0.0
    seconds_per_trajectory: float = 0.0
    spread_inflation: float = 1.0  # the draws' spread factor, fitted on the validation split (1: none)

    def as_dict(self) -> dict[str, Any]:
        return {"members": self.members, **self.overall, "denoiser_evals_per_draw": self.denoiser_evals_per_draw,
                "seconds_per_draw": self.seconds_per_draw, "seconds_per_trajectory": self.seconds_per_trajectory,
                "spread_inflation": self.spread_inflation, "curves": self.curves}


@dataclass
class SpreadFields:
    """One plotted sample: truth, and each method's ensemble mean and std, at a few steps."""

    index: int
    steps: list[int]
    true: dict[int, list[float]]
    mean: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    std: dict[str, dict[int, list[float]]] = field(default_factory=dict)


@dataclass
class EnsembleResult:
    n_samples: int
    members: int
    rollout_steps: int
    device: str
    methods: dict[str, MethodStats]
    samples: list[SpreadFields]


def residual_draws(cfg: Config, samplers: dict[str, Sampler]) -> dict[str, Draw]:
    """Each sampling method's draw: latent residual given the operator's prediction and its
    0-based rollout step, in latent units."""
    draws: dict[str, Draw] = {}
    if TEACHER in samplers:
        t = samplers[TEACHER]

        def teacher(pred: Tensor, gen: torch.Generator, step: int) -> Tensor:
            cond, factor = residual_condition(pred, t.scale, step)
            return sample(t.model, cond, pred.shape, cfg.diffusion.sample_steps, cfg.diffusion, gen) / factor

        draws[TEACHER] = teacher
    if STUDENT in samplers:
        s = samplers[STUDENT]

        def student(pred: Tensor, gen: torch.Generator, step: int) -> Tensor:
            cond, factor = residual_condition(pred, s.scale, step)
            return consistency_sample(s.model, cond, pred.shape, cfg.consistency.student_steps,
                                      cfg.diffusion, gen) / factor

        draws[STUDENT] = student
    return draws


@contextmanager
def counted(module: Optional[nn.Module]) -> Iterator[list[int]]:
    """Counts the module's forward calls while the block runs."""
    calls = [0]
    if module is None:
        yield calls
        return
    handle = module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        yield calls
    finally:
        handle.remove()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _Cost:
    calls: int = 0
    draws: int = 0
    seconds: float = 0.0


def roll_ensemble(models: Models, u0: Tensor, members: int, steps: int, draw: Optional[Draw],
                  gen: torch.Generator, cost: _Cost, feed_back: bool = True, inflation: float = 1.0) -> np.ndarray:
    """Fields [members, B, steps, X] of `members` rollouts from the fields u0 [B, X].

    `feed_back`: each member continues from its prediction plus its draw (a one-step
    residual); otherwise every member follows the operator's own rollout and its draw
    is only added to what is scored (a lead-time residual, `diffusion.lead_time`).
    `inflation` scales each step's draws about their mean over the members of a sample
    (multiplicative spread inflation): the ensemble mean of the draws is unchanged.
    """
    b = u0.shape[0]
    z = models.codec.encode(u0).repeat(members, 1, 1)  # member-major: row m * b + i
    out = []
    for step in range(steps):
        pred = torch.cat([models.operator(chunk).float() for chunk in z.split(MODEL_CHUNK)])
        member = pred
        if draw is not None:
            drawn = []
            for chunk in pred.split(MODEL_CHUNK):
                _sync(pred.device)
                t0 = time.perf_counter()
                drawn.append(draw(chunk, gen, step))
                _sync(pred.device)
                cost.seconds += time.perf_counter() - t0
                cost.draws += 1
            residual = torch.cat(drawn)
            if inflation != 1.0:
                by_member = residual.reshape(members, b, *residual.shape[1:])
                mean = by_member.mean(0, keepdim=True)
                residual = (mean + inflation * (by_member - mean)).reshape(residual.shape)
            member = pred + residual
        z = member if feed_back else pred
        out.append(models.codec.decode(member).reshape(members, b, -1).cpu().numpy())
    return np.stack(out, axis=2)


def fit_inflation(cfg: Config, models: Models, draw: Draw, feed_back: bool, data: FieldSplit,
                  device: torch.device, seed: int) -> float:
    """1 / the spread/skill of `draw`'s ensemble on `data` (the validation split), drawn as
    `evaluate_ensembles` draws it (same samples, batches and `seed`): the factor that
    calibrates it there. With a lead-time residual the ensemble mean does not move, so the
    factor scales spread/skill exactly; with fed-back draws only approximately."""
    members, steps, stride = cfg.eval.ensemble_size, plan_rollout(cfg, data.n_times), cfg.data.time_stride
    n = min(len(data), cfg.eval.max_samples or len(data), cfg.eval.ensemble_max_samples or len(data))
    acc, gen = EnsembleAccumulator(steps, members), torch.Generator().manual_seed(seed)
    batch = max(1, MEMBER_BATCH // members)
    for lo in range(0, n, batch):
        u = torch.from_numpy(data.trajectories(list(range(lo, min(lo + batch, n))))).to(device)
        acc.add(roll_ensemble(models, u[:, 0], members, steps, draw, gen, _Cost(), feed_back),
                u[:, stride: stride * steps + 1: stride].cpu().numpy())
    ratio = acc.overall()["spread_skill"]
    return 1.0 / ratio if np.isfinite(ratio) and ratio > 0 else 1.0


def _keep(samples: list[SpreadFields], limit: int, lo: int, name: str, fields: np.ndarray, truth: np.ndarray,
          shown: list[int]) -> None:
    """Ensemble mean and std at the plotted steps for the first `limit` samples."""
    for b in range(truth.shape[0]):
        idx = lo + b
        if idx >= limit:
            return
        if idx == len(samples):
            samples.append(SpreadFields(idx, shown, {k: truth[b, k - 1].tolist() for k in shown}))
        s = samples[idx]
        s.mean[name] = {k: fields[:, b, k - 1].mean(axis=0).tolist() for k in shown}
        s.std[name] = {k: fields[:, b, k - 1].std(axis=0).tolist() for k in shown}


@torch.no_grad()
def evaluate_ensembles(cfg: Config, models: Models, samplers: dict[str, Sampler], data: FieldSplit,
                       device: torch.device, calibration: Optional[FieldSplit] = None) -> Optional[EnsembleResult]:
    """Score the operator and each sampling stage present on the first samples of `data`;
    with a `calibration` split (`eval.calibrate_spread`), each sampler's spread is first
    inflated to spread/skill 1 there (`fit_inflation`), then scored on `data` so."""
    members = cfg.eval.ensemble_size
    draws = residual_draws(cfg, samplers)
    if members == 0 or not draws:
        return None
    if members == 1:
        raise ConfigError("eval.ensemble_size=1 has no spread to score; use 0 (skip) or at least 2")
    n = min(len(data), cfg.eval.max_samples or len(data), cfg.eval.ensemble_max_samples or len(data))
    steps, stride = plan_rollout(cfg, data.n_times), cfg.data.time_stride
    for sampler in samplers.values():
        check_lead_steps(sampler.model.lead_steps, steps)
    shown = plot_steps(steps)
    plan = {OPERATOR: (1, None), **{name: (members, d) for name, d in draws.items()}}
    acc = {name: EnsembleAccumulator(steps, m) for name, (m, _) in plan.items()}
    costs = {name: _Cost() for name in plan}
    gens = {name: torch.Generator().manual_seed(cfg.eval.seed + i) for i, name in enumerate(plan)}
    feed_back = {name: not samplers[name].model.lead_steps for name in draws}
    inflation = {name: 1.0 for name in plan}
    if calibration is not None:
        for i, name in enumerate(plan):
            if name in draws:
                inflation[name] = fit_inflation(cfg, models, draws[name], feed_back[name], calibration, device,
                                                cfg.eval.seed + i)
    samples: list[SpreadFields] = []
    batch = max(1, MEMBER_BATCH // members)
    for lo in range(0, n, batch):
        u = torch.from_numpy(data.trajectories(list(range(lo, min(lo + batch, n))))).to(device)
        truth = u[:, stride: stride * steps + 1: stride].cpu().numpy()
        for name, (m, draw) in plan.items():
            model = samplers[name].model if name in samplers else None
            with counted(model) as calls:
                fields = roll_ensemble(models, u[:, 0], m, steps, draw, gens[name], costs[name],
                                       feed_back.get(name, True), inflation[name])
            costs[name].calls += calls[0]
            acc[name].add(fields, truth)
            _keep(samples, cfg.eval.plot_samples, lo, name, fields, truth, shown)
    stats = {name: _stats(acc[name], costs[name], n, steps, plan[name][0]) for name in plan}
    for name, factor in inflation.items():
        stats[name].spread_inflation = factor
    return EnsembleResult(n, members, steps, str(device), stats, samples)


def _stats(acc: EnsembleAccumulator, cost: _Cost, n: int, steps: int, members: int) -> MethodStats:
    """A draw is one residual for one latent state; a call of the sampler draws a whole chunk of them."""
    curves = {k: acc.curve(k) for k in ("crps", "nrmse_of_mean", "mae_of_mean")}
    curves["spread_skill"] = acc.spread_skill_curve()
    trajectories = n * members
    stats = MethodStats(members=members, overall=acc.overall(), curves=curves)
    if cost.draws:
        stats.denoiser_evals_per_draw = cost.calls / cost.draws
        stats.seconds_per_draw = cost.seconds / (trajectories * steps)
        stats.seconds_per_trajectory = cost.seconds / trajectories
    return stats
