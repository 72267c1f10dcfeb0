"""PDEBench's evaluation protocol, beside the baselines that cost nothing.

PDEBench scores 1D Burgers (`pdebench/models/config/args/config_Bgs.yaml`,
`models/fno/utils.py`, `models/metrics.py`) on every 4th grid point (256 of 1024) and
every 5th snapshot (41 of 201): the first `initial_step` = 10 frames are given, the
other 31 are predicted autoregressively, on the first 10 % of the file (1,000
trajectories). `metric_func` computes, per sample and per predicted frame,

    ||pred_t - true_t||_2 / ||true_t||_2        (RMS over space of error over RMS of truth)

then averages over the batch, over channels and over time; `metrics()` adds the batch
averages and divides by `itot`, the *index* of the last batch (one less than the number
of batches: with batch_size 50 on 1,000 samples, 20 batches summed over 19). Our `mean`
is the mean over samples of the per-sample time average, which is metrics.py's average
without that off-by-one; `metrics_py_reported` reproduces the printed number as well.
Every score also comes as a median and as the per-sample array, so one near-zero
sample (whose ratio explodes) cannot make a headline.

Baselines, each from the last given frame u_g: `zero` (nRMSE exactly 1), `mean` (its
spatial mean, which Burgers conserves), `heat` (the exact periodic solution of
u_t = nu u_xx from u_g: Burgers without its nonlinearity), `persistence` (u_g itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from ups.eval.metrics import nrmse

ZERO, MEAN, HEAT, PERSISTENCE = "zero", "mean", "heat", "persistence"
BASELINES = (ZERO, MEAN, HEAT, PERSISTENCE)
PDEBENCH_BATCH = 50  # config_Bgs.yaml batch_size, the batching metrics() averages over


@dataclass(frozen=True)
class Protocol:
    """Which frames are given and predicted: frames are every `time_stride`-th snapshot."""

    time_stride: int = 5
    given: int = 10
    predicted: int = 31
    max_samples: int = 1000

    def frames(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(given [N, given, X], target [N, predicted, X]) from trajectories [N, T, X]."""
        need = (self.given + self.predicted - 1) * self.time_stride + 1
        if u.shape[1] < need:
            raise ValueError(
                f"trajectories of {u.shape[1]} snapshots are too short for {self.given} given + "
                f"{self.predicted} predicted frames every {self.time_stride} snapshots ({need} needed)"
            )
        f = u[:, : need : self.time_stride]
        return f[:, : self.given], f[:, self.given :]


def per_sample_nrmse(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """[N]: each sample's nRMSE averaged over its predicted frames (metric_func, before the batch mean)."""
    return nrmse(pred, target).mean(axis=1)


def metrics_py_reported(per_sample: np.ndarray, batch_size: int = PDEBENCH_BATCH) -> float:
    """The number PDEBench's metrics() prints: batch means summed, divided by the last batch index."""
    means = [per_sample[lo: lo + batch_size].mean() for lo in range(0, len(per_sample), batch_size)]
    return float(sum(means) / (len(means) - 1)) if len(means) > 1 else math.nan


def baselines(given: np.ndarray, steps: int, dt: float, viscosity: float) -> dict[str, np.ndarray]:
    """Each baseline's prediction [N, steps, X] from the given frames; `dt` is the time per frame."""
    last = np.asarray(given[:, -1], dtype=np.float64)
    n, nx = last.shape
    k = 2 * np.pi * np.fft.rfftfreq(nx, d=1.0 / nx)  # periodic domain of length 1
    decay = np.exp(-viscosity * k[None, :] ** 2 * (dt * np.arange(1, steps + 1))[:, None])  # [steps, K]
    heat = np.fft.irfft(np.fft.rfft(last)[:, None, :] * decay[None], n=nx, axis=-1)
    return {
        ZERO: np.zeros((n, steps, nx)),
        MEAN: np.repeat(last.mean(axis=1)[:, None, None], steps, axis=1) * np.ones((1, 1, nx)),
        HEAT: heat,
        PERSISTENCE: np.repeat(last[:, None], steps, axis=1),
    }


@dataclass
class MethodScore:
    per_sample: np.ndarray  # [N]
    curve: np.ndarray  # [predicted]: mean over samples at each predicted frame

    @property
    def mean(self) -> float:
        return float(self.per_sample.mean())

    @property
    def median(self) -> float:
        return float(np.median(self.per_sample))

    def as_dict(self) -> dict[str, object]:
        return {"mean": self.mean, "median": self.median, "metrics_py_reported": metrics_py_reported(self.per_sample),
                "final_frame_mean": float(self.curve[-1]), "curve": self.curve.tolist(),
                "per_sample": self.per_sample.tolist()}


@dataclass
class ProtocolResult:
    protocol: Protocol
    n_samples: int
    scores: dict[str, MethodScore] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        p = self.protocol
        return {"time_stride": p.time_stride, "given": p.given, "predicted": p.predicted, "samples": self.n_samples,
                "methods": {m: s.as_dict() for m, s in self.scores.items()}}


Predictor = Callable[[np.ndarray, int], np.ndarray]  # (given [B, g, X], steps) -> [B, steps, X]


def evaluate_protocol(batches: Iterable[np.ndarray], protocol: Protocol, dt: float, viscosity: float,
                      models: dict[str, Predictor] | None = None) -> ProtocolResult:
    """Score `models` and the baselines on trajectory batches [B, T, X] (the first max_samples)."""
    per: dict[str, list[np.ndarray]] = {}
    sums: dict[str, np.ndarray] = {}
    n = 0
    for u in batches:
        u = u[: max(0, protocol.max_samples - n)]
        if not len(u):
            break
        given, target = protocol.frames(np.asarray(u, dtype=np.float64))
        preds = dict(baselines(given, protocol.predicted, dt, viscosity))
        for name, predict in (models or {}).items():
            preds[name] = np.asarray(predict(given, protocol.predicted), dtype=np.float64)
        for name, pred in preds.items():
            err = nrmse(pred, target)  # [B, predicted]
            per.setdefault(name, []).append(err.mean(axis=1))
            sums[name] = sums.get(name, 0) + err.sum(axis=0)
        n += len(u)
    if n == 0:
        raise ValueError("no trajectories to evaluate the protocol on")
    scores = {name: MethodScore(np.concatenate(per[name]), sums[name] / n) for name in per}
    return ProtocolResult(protocol, n, scores)


def table(result: ProtocolResult, first: Iterable[str] = ()) -> list[str]:
    """Printed lines: one per method, models first, with mean, median and the final frame."""
    order = [m for m in first if m in result.scores] + [m for m in result.scores if m not in first]
    p = result.protocol
    lines = [f"Protocol: {p.given} given frames, {p.predicted} predicted autoregressively, every "
             f"{p.time_stride} snapshots, {result.n_samples} samples (nRMSE, PDEBench metric_func):",
             f"  {'method':<20} {'mean':>9} {'median':>9} {'final frame':>12}"]
    for m in order:
        s = result.scores[m]
        lines.append(f"  {m:<20} {s.mean:>9.4f} {s.median:>9.4f} {float(s.curve[-1]):>12.4f}")
    return lines


def verdict(result: ProtocolResult, model: str) -> str:
    """One line: the model against the best free baseline (by mean), in mean and median."""
    best = min(BASELINES, key=lambda b: result.scores[b].mean)
    m, b = result.scores[model], result.scores[best]
    return (f"{model} vs the best free baseline ({best}): mean {m.mean:.4f} / {b.mean:.4f} = {m.mean / b.mean:.2f}x, "
            f"median {m.median:.4f} / {b.median:.4f} = {m.median / b.median:.2f}x")
