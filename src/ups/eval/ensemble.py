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

    def as_dict(self) -> dict[str, Any]:
        return {"members": self.members, **self.overall, "denoiser_evals_per_draw": self.denoiser_evals_per_draw,
                "seconds_per_draw": self.seconds_per_draw, "seconds_per_trajectory": self.seconds_per_trajectory,
                "curves": self.curves}


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
                  gen: torch.Generator, cost: _Cost, feed_back: bool = True) -> np.ndarray:
    """Fields [members, B, steps, X] of `members` rollouts from the fields u0 [B, X].

    `feed_back`: each member continues from its prediction plus its draw (a one-step
    residual); otherwise every member follows the operator's own rollout and its draw
    is only added to what is scored (a lead-time residual, `diffusion.lead_time`).
    """
    b = u0.shape[0]
    z = models.codec.encode(u0).repeat(members, 1, 1)  # member-major: row m * b + i
    out = []
    for step in range(steps):
        rolled, scored = [], []
        for chunk in z.split(MODEL_CHUNK):
            pred = models.operator(chunk).float()
            member = pred
            if draw is not None:
                _sync(pred.device)
                t0 = time.perf_counter()
                member = pred + draw(pred, gen, step)
                _sync(pred.device)
                cost.seconds += time.perf_counter() - t0
                cost.draws += 1
            rolled.append(member if feed_back else pred)
            scored.append(member)
        z = torch.cat(rolled)
        out.append(models.codec.decode(torch.cat(scored)).reshape(members, b, -1).cpu().numpy())
    return np.stack(out, axis=2)


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
                       device: torch.device) -> Optional[EnsembleResult]:
    """Score the operator and each sampling stage present on the first samples of `data`."""
    members = cfg.eval.ensemble_size
    draws = residual_draws(cfg, samplers)
    if members == 0 or not draws:
        return None
    if members == 1:
        raise ConfigError("eval.ensemble_size=1 has no spread to score; use 0 (skip) or at least 2")
    n = min(len(data), cfg.eval.max_samples or len(data), cfg.eval.ensemble_max_samples or len(data))
    steps, stride = plan_rollout(cfg, data.n_times), cfg.data.time_stride
    for sampler in samplers.values():
        check_lead_steps(getattr(sampler.model, "lead_steps", 0), steps)
    shown = plot_steps(steps)
    plan = {OPERATOR: (1, None), **{name: (members, d) for name, d in draws.items()}}
    acc = {name: EnsembleAccumulator(steps, m) for name, (m, _) in plan.items()}
    costs = {name: _Cost() for name in plan}
    gens = {name: torch.Generator().manual_seed(cfg.eval.seed + i) for i, name in enumerate(plan)}
    samples: list[SpreadFields] = []
    batch = max(1, MEMBER_BATCH // members)
    for lo in range(0, n, batch):
        u = torch.from_numpy(data.trajectories(list(range(lo, min(lo + batch, n))))).to(device)
        truth = u[:, stride: stride * steps + 1: stride].cpu().numpy()
        for name, (m, draw) in plan.items():
            model = samplers[name].model if name in samplers else None
            with counted(model) as calls:
                fields = roll_ensemble(models, u[:, 0], m, steps, draw, gens[name], costs[name],
                                       feed_back=not getattr(model, "lead_steps", 0))
            costs[name].calls += calls[0]
            acc[name].add(fields, truth)
            _keep(samples, cfg.eval.plot_samples, lo, name, fields, truth, shown)
    stats = {name: _stats(acc[name], costs[name], n, steps, plan[name][0]) for name in plan}
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
