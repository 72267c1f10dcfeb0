"""Scores for the stages that sample: CRPS, spread/skill, energy spectra and MMD, on plain arrays.

nRMSE scores one prediction. The diffusion residual, its consistency student
and the steady prior each issue *samples*, and a sample is judged by how well
its distribution matches the truth, not by one draw:

- CRPS (continuous ranked probability score), per grid point, with the
  ensemble as the forecast distribution (Gneiting & Raftery 2007, eq. 21):
      CRPS = mean_i |x_i - y| - 1/(2 M^2) sum_ij |x_i - x_j|
  For one member (a deterministic forecast) the second term vanishes and CRPS
  is the absolute error: the operator's CRPS is its MAE, so the two compare on
  one scale. `fair=True` uses 1/(2 M (M-1)) instead, the estimator that does
  not penalise a small ensemble (Ferro 2014).
- spread/skill: sqrt((M+1)/M * mean ensemble variance) / RMSE of the ensemble
  mean. For members and truth drawn from one distribution its expectation is 1
  (Fortin et al. 2014 give the (M+1)/M finite-ensemble factor); below 1 the
  ensemble is over-confident, above 1 under-confident.
- energy spectrum: mean |rfft(u)|^2 per wavenumber over a set of fields; the
  distance of two sets is the mean |log10| ratio over wavenumbers 1..X/2 (the
  mean, k = 0, is a conserved quantity of periodic Burgers, not a shape).
- MMD: maximum mean discrepancy with a Gaussian kernel (Gretton et al. 2012),
  the biased V-statistic, so identical sets score exactly 0.

`EnsembleAccumulator` streams these over batches so a test split never has to
sit in memory. Everything here is numpy, tested on arrays with known answers.
"""

from __future__ import annotations

import math

import numpy as np

from ups.eval.metrics import nrmse

# Floor under spectral energies before taking logs: a wavenumber with no energy
# in either set contributes ~0 rather than inf.
SPECTRUM_FLOOR = 1e-30
MMD_MAX_POINTS = 1000  # the kernel matrices are n^2: subsample beyond this (evenly, no randomness)


def crps_ensemble(members: np.ndarray, truth: np.ndarray, fair: bool = False) -> np.ndarray:
    """Per-point CRPS of an ensemble `members` [M, ...] against `truth` [...]."""
    members = np.asarray(members, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if members.shape[1:] != truth.shape:
        raise ValueError(f"ensemble shape {members.shape} does not fit truth shape {truth.shape}")
    m = members.shape[0]
    skill = np.abs(members - truth).mean(axis=0)
    if m == 1:
        return skill
    # sum_ij |x_i - x_j| = 2 sum_i (2i - M - 1) x_(i) over the sorted members (i = 1..M): O(M log M).
    ranks = (2 * np.arange(1, m + 1) - m - 1).reshape(-1, *([1] * truth.ndim))
    pair_sum = 2.0 * (ranks * np.sort(members, axis=0)).sum(axis=0)
    return skill - pair_sum / (2.0 * m * (m - 1 if fair else m))


def spread_skill_ratio(variance: float, squared_error: float, members: int) -> float:
    """sqrt((M+1)/M * mean variance) / sqrt(mean squared error of the ensemble mean); nan if undefined."""
    if members < 2 or not squared_error > 0:
        return math.nan
    return math.sqrt((members + 1) / members * variance) / math.sqrt(squared_error)


class EnsembleAccumulator:
    """Per rollout step sums of CRPS, ensemble variance, squared error and nRMSE of the mean.

    `add` takes members [M, B, steps, X] and truth [B, steps, X]; every mean is over
    samples and grid points, per step (`curve`) and then over steps (`overall`), as
    the nRMSE curves are.
    """

    KEYS = ("crps", "crps_fair", "variance", "squared_error", "mae_of_mean", "nrmse_of_mean")

    def __init__(self, steps: int, members: int):
        self.members = members
        self.sums = {k: np.zeros(steps, dtype=np.float64) for k in self.KEYS}
        self.points = 0  # samples * grid points seen per step
        self.samples = 0

    def add(self, members: np.ndarray, truth: np.ndarray) -> None:
        members = np.asarray(members, dtype=np.float64)
        truth = np.asarray(truth, dtype=np.float64)
        if members.shape[0] != self.members:
            raise ValueError(f"expected {self.members} members, got {members.shape[0]}")
        mean = members.mean(axis=0)
        over = (0, 2)  # samples and space, keeping steps
        self.sums["crps"] += crps_ensemble(members, truth).sum(axis=over)
        if self.members > 1:
            self.sums["crps_fair"] += crps_ensemble(members, truth, fair=True).sum(axis=over)
            self.sums["variance"] += members.var(axis=0, ddof=1).sum(axis=over)
        self.sums["squared_error"] += ((mean - truth) ** 2).sum(axis=over)
        self.sums["mae_of_mean"] += np.abs(mean - truth).sum(axis=over)
        self.sums["nrmse_of_mean"] += nrmse(mean, truth).sum(axis=0)  # per sample, not per point
        self.points += truth.shape[0] * truth.shape[-1]
        self.samples += truth.shape[0]

    def curve(self, key: str) -> list[float]:
        if not self.points:
            return [math.nan] * len(self.sums[key])
        if key in ("crps_fair", "variance") and self.members < 2:
            return [math.nan] * len(self.sums[key])
        return (self.sums[key] / (self.samples if key == "nrmse_of_mean" else self.points)).tolist()

    def spread_skill_curve(self) -> list[float]:
        return [spread_skill_ratio(v, e, self.members)
                for v, e in zip(self.curve("variance"), self.curve("squared_error"))]

    def overall(self) -> dict[str, float]:
        """Means over steps; spread/skill from the step-averaged variance and squared error."""
        out = {k: float(np.mean(self.curve(k))) for k in self.KEYS}
        out["spread"] = math.sqrt(out["variance"]) if math.isfinite(out["variance"]) else math.nan
        out["skill_rmse"] = math.sqrt(out["squared_error"])
        out["spread_skill"] = spread_skill_ratio(out["variance"], out["squared_error"], self.members)
        return out


def energy_spectrum(fields: np.ndarray) -> np.ndarray:
    """Mean spectral energy |rfft(u)/X|^2 per wavenumber 0..X/2 over fields [N, X]."""
    fields = np.asarray(fields, dtype=np.float64)
    coeffs = np.fft.rfft(fields, axis=-1) / fields.shape[-1]
    return (np.abs(coeffs) ** 2).reshape(-1, coeffs.shape[-1]).mean(axis=0)


def spectrum_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |log10(E_a(k) / E_b(k))| over k = 1..X/2 of two sets of fields [N, X]."""
    ea = np.maximum(energy_spectrum(a)[1:], SPECTRUM_FLOOR)
    eb = np.maximum(energy_spectrum(b)[1:], SPECTRUM_FLOOR)
    if ea.shape != eb.shape:
        raise ValueError(f"fields of different grids: {np.shape(a)} vs {np.shape(b)}")
    return float(np.mean(np.abs(np.log10(ea / eb))))


def _subsample(x: np.ndarray, limit: int = MMD_MAX_POINTS) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if len(x) <= limit:
        return x
    return x[np.linspace(0, len(x) - 1, limit).round().astype(int)]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def median_bandwidth(x: np.ndarray) -> float:
    """The median pairwise distance of a set (the usual kernel width for MMD); 1.0 if degenerate."""
    x = _subsample(x)
    d = np.sqrt(_sq_dists(x, x)[np.triu_indices(len(x), k=1)])
    med = float(np.median(d)) if d.size else 0.0
    return med if med > 0 else 1.0


def mmd(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """sqrt of the biased MMD^2 between sets x [N, ...] and y [M, ...], Gaussian kernel of width `bandwidth`."""
    x, y = _subsample(x), _subsample(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"sets of different dimension: {x.shape[1]} vs {y.shape[1]}")
    gamma = 1.0 / (2.0 * bandwidth ** 2)
    kxx = np.exp(-gamma * _sq_dists(x, x)).mean()
    kyy = np.exp(-gamma * _sq_dists(y, y)).mean()
    kxy = np.exp(-gamma * _sq_dists(x, y)).mean()
    return math.sqrt(max(kxx + kyy - 2.0 * kxy, 0.0))


def gaussian_samples(states: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws from the Gaussian with the mean and covariance of `states` [N, X].

    mean + C^T g / sqrt(N - 1), with C the centred states and g ~ N(0, I_N), has
    exactly that covariance without forming or factorising the X x X matrix, so it
    works for X = 1024 from a few hundred states.
    """
    states = np.asarray(states, dtype=np.float64)
    if len(states) < 2:
        raise ValueError("a Gaussian fit needs at least two states")
    mean = states.mean(axis=0)
    centred = states - mean
    g = rng.standard_normal((n, len(states)))
    return mean + g @ centred / math.sqrt(len(states) - 1)
