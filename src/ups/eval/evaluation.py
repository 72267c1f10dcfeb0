"""Score an operator (and its diffusion correction) on held-out trajectories, in physical space.

Latents are an implementation detail of the surrogate; what a user cares about
is the field. So every prediction is decoded with the codec the checkpoint
describes and compared with the stored field. Three methods are scored side by
side on the same samples:

- `persistence`: u(t + k dt) ≈ u(t) — the baseline a surrogate has to beat;
- `operator`: the latent operator, stepped k times;
- `operator+diffusion`: each step corrected by the diffusion model's
  deterministic estimate of the residual (`diffusion.sample_mean`).

One-step errors use every start time; rollouts start at t = 0 and run
`eval.rollout_steps` steps (default: to the end of the trajectory), every
`data.time_stride` snapshots as in training. Metrics: `ups.eval.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ups.config import Config
from ups.data.pdebench import FieldSplit
from ups.errors import ConfigError, DataError
from ups.eval.loading import Models, check_lead_steps
from ups.eval.metrics import RunningCurve, RunningMean, nrmse

PERSISTENCE, OPERATOR, CORRECTED = "persistence", "operator", "operator+diffusion"
BATCH_TRAJECTORIES = 32
MODEL_CHUNK = 4096  # latent states per forward pass: bounds memory on long trajectories


@dataclass
class SampleFields:
    """One sample's fields at a few rollout steps, kept for the report's plots."""

    index: int
    steps: list[int]
    true: dict[int, list[float]]
    pred: dict[str, dict[int, list[float]]]


@dataclass
class EvalResult:
    split: str
    n_samples: int
    rollout_steps: int
    time_stride: int
    times: list[float]  # physical time at rollout step 1..K
    x: list[float]
    one_step: dict[str, float]
    curves: dict[str, list[float]]
    samples: list[SampleFields] = field(default_factory=list)

    def rollout(self, method: str) -> float:
        return float(np.mean(self.curves[method]))

    @property
    def methods(self) -> list[str]:
        return list(self.curves)


def plan_rollout(cfg: Config, n_times: int) -> int:
    """How many rollout steps to score: `eval.rollout_steps`, or as far as the data reaches."""
    stride = cfg.data.time_stride
    available = (n_times - 1) // stride
    if available < 1:
        raise DataError(f"trajectories of {n_times} snapshots hold no step of data.time_stride={stride}")
    wanted = cfg.eval.rollout_steps
    if wanted is not None and wanted > available:
        raise ConfigError(
            f"eval.rollout_steps={wanted} exceeds the {available} steps the trajectories hold "
            f"({n_times} snapshots, data.time_stride={stride}); lower it or leave it unset"
        )
    return wanted or available


def plot_steps(rollout_steps: int) -> list[int]:
    """The rollout steps shown for each plotted sample: first, middle, last."""
    return sorted({1, max(1, rollout_steps // 2), rollout_steps})


@torch.no_grad()
def evaluate(cfg: Config, models: Models, data: FieldSplit, device: torch.device) -> EvalResult:
    if data.nx != models.codec.nx:
        raise DataError(
            f"{data.path} holds fields of {data.nx} points but the checkpoint's codec expects "
            f"{models.codec.nx}; evaluate on data of the resolution it was trained on"
        )
    n = min(len(data), cfg.eval.max_samples or len(data))
    steps = plan_rollout(cfg, data.n_times)
    check_lead_steps(models.lead_steps, steps)
    stride = cfg.data.time_stride
    methods = [PERSISTENCE, OPERATOR] + ([CORRECTED] if models.correction else [])
    curves = {m: RunningCurve(steps) for m in methods}
    one = {m: RunningMean() for m in methods}
    samples: list[SampleFields] = []
    for lo in range(0, n, BATCH_TRAJECTORIES):
        idx = list(range(lo, min(lo + BATCH_TRAJECTORIES, n)))
        u = torch.from_numpy(data.trajectories(idx)).to(device)
        _one_step(models, u, stride, one)
        preds = _rollout(models, u, stride, steps, curves)
        _keep_samples(samples, cfg.eval.plot_samples, lo, u, preds, stride, steps)
    t = data.t
    return EvalResult(
        split=data.split, n_samples=n, rollout_steps=steps, time_stride=stride,
        times=[float(t[k * stride]) for k in range(1, steps + 1)], x=data.x.tolist(),
        one_step={m: one[m].mean for m in methods}, curves={m: curves[m].curve for m in methods},
        samples=samples,
    )


def _advance(models: Models, z: Tensor, corrected: bool, step: int = 0) -> tuple[Tensor, Tensor]:
    """One operator step on a batch of latents [N, tokens, dim], in chunks: (what the rollout
    continues from, what is scored). A one-step residual's correction is rolled on from; a
    lead-time residual's (`Models.lead_steps`) is added to the operator's own rollout only."""
    rolled, scored = [], []
    for chunk in z.split(MODEL_CHUNK):
        pred = models.operator(chunk).float()
        out = pred + models.correction(pred, step) if corrected else pred
        rolled.append(pred if models.lead_steps else out)
        scored.append(out)
    return torch.cat(rolled), torch.cat(scored)


def _one_step(models: Models, u: Tensor, stride: int, one: dict[str, RunningMean]) -> None:
    """Every (sample, t) -> t + stride pair of the batch."""
    start = u[:, :-stride].reshape(-1, u.shape[-1])
    target = u[:, stride:].reshape(-1, u.shape[-1]).cpu().numpy()
    z = models.codec.encode(start)
    one[PERSISTENCE].add(nrmse(start.cpu().numpy(), target))
    for method in one:
        if method != PERSISTENCE:
            pred = models.codec.decode(_advance(models, z, method == CORRECTED)[1])
            one[method].add(nrmse(pred.cpu().numpy(), target))


def _rollout(models: Models, u: Tensor, stride: int, steps: int,
             curves: dict[str, RunningCurve]) -> dict[str, np.ndarray]:
    """Autoregressive rollouts from t = 0; returns each method's fields [B, steps, X]."""
    truth = u[:, stride: stride * steps + 1: stride].cpu().numpy()
    preds = {PERSISTENCE: np.repeat(u[:, :1].cpu().numpy(), steps, axis=1)}
    for method in curves:
        if method == PERSISTENCE:
            continue
        z, fields = models.codec.encode(u[:, 0]), []
        for step in range(steps):
            z, scored = _advance(models, z, method == CORRECTED, step)
            fields.append(models.codec.decode(scored).cpu().numpy())
        preds[method] = np.stack(fields, axis=1)
    for method, pred in preds.items():
        curves[method].add(nrmse(pred, truth))
    preds["true"] = truth
    return preds


def _keep_samples(samples: list[SampleFields], limit: int, lo: int, u: Tensor, preds: dict[str, np.ndarray],
                  stride: int, steps: int) -> None:
    shown = plot_steps(steps)
    for b in range(min(limit - len(samples), u.shape[0])):
        samples.append(SampleFields(
            index=lo + b, steps=shown,
            true={k: preds["true"][b, k - 1].tolist() for k in shown},
            pred={m: {k: p[b, k - 1].tolist() for k in shown} for m, p in preds.items() if m != "true"},
        ))


def summary(result: EvalResult) -> dict[str, Any]:
    """The headline numbers, keyed as `metadata.json` records them (`metric:nrmse` first).

    `metric:nrmse` is the operator's rollout nRMSE: the surrogate's own skill. The
    others sit beside it so a reader sees at once whether it beats persistence and
    whether the diffusion correction helps.
    """
    out: dict[str, Any] = {
        "metric:nrmse": result.rollout(OPERATOR),
        "metric:nrmse_one_step": result.one_step[OPERATOR],
        "metric:nrmse_persistence": result.rollout(PERSISTENCE),
        "metric:nrmse_persistence_one_step": result.one_step[PERSISTENCE],
    }
    if CORRECTED in result.curves:
        out["metric:nrmse_corrected"] = result.rollout(CORRECTED)
        out["metric:nrmse_corrected_one_step"] = result.one_step[CORRECTED]
    out.update(split=result.split, samples=result.n_samples, rollout_steps=result.rollout_steps)
    return out
