"""nRMSE exactly as PDEBench defines it, kept apart from models so it is tested on numbers.

For one sample at one time, with the field on a spatial grid,

    nRMSE = ||pred - true||_2 / ||true||_2        (norms over space)

It is averaged over samples; a rollout's nRMSE is that average taken at every
rollout step (the *curve*) and then averaged over the steps, as PDEBench's
`metric_func` does (`err_nRMSE`, mean over batch, then over time). A one-step
nRMSE is the average over every (sample, start time) pair.

`RunningCurve` accumulates sums, so evaluation streams over batches of
trajectories and a large test split never has to sit in memory.
"""

from __future__ import annotations

import math

import numpy as np

# A true field with a norm below this is treated as zero: its ratio would be noise.
TINY_NORM = 1e-12


def nrmse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-sample nRMSE over the last (spatial) axis: shape = pred.shape[:-1]."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {true.shape}")
    err = np.linalg.norm(pred - true, axis=-1)
    ref = np.linalg.norm(true, axis=-1)
    return err / np.maximum(ref, TINY_NORM)


class RunningCurve:
    """Mean nRMSE per rollout step, accumulated over batches of samples."""

    def __init__(self, steps: int):
        self.sums = np.zeros(steps, dtype=np.float64)
        self.count = 0

    def add(self, per_step: np.ndarray) -> None:
        """`per_step`: [batch, steps] nRMSE values of one batch of samples."""
        per_step = np.asarray(per_step, dtype=np.float64)
        self.sums += per_step.sum(axis=0)
        self.count += per_step.shape[0]

    @property
    def curve(self) -> list[float]:
        if self.count == 0:
            return [math.nan] * len(self.sums)
        return (self.sums / self.count).tolist()

    @property
    def mean(self) -> float:
        """The rollout nRMSE: the curve averaged over its steps."""
        curve = self.curve
        return float(np.mean(curve)) if curve else math.nan


class RunningMean:
    """Mean of many per-sample values (the one-step nRMSE)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        self.total += float(values.sum())
        self.count += values.size

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan
