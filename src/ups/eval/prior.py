"""The steady prior against held-out long-time states, beside what costs nothing.

The prior is trained on single latent states from the last
`steady_prior.tail_fraction` of each training trajectory. Its samples are
decoded to fields and compared with the same kind of states from the evaluation
split, by energy spectrum distance and MMD (`ups.eval.probabilistic`). Two rows
sit beside it so the numbers mean something:

- `gaussian_fit`: a Gaussian with the mean and covariance of the *training*
  long-time states — the same information the prior had, no network;
- `train_states`: the training long-time states themselves — the floor: a
  perfect model of the training distribution scores about this, not 0.

State sets are capped at `MAX_STATES`, picked evenly over (trajectory, time)
so that the result does not depend on randomness or on the file's size. The two rows
that are drawn are drawn `DRAWS` times (seeds `eval.seed`, `eval.seed + 1`, ...): a
row's distance is the mean over its draws, with their std beside it: one draw of a few
hundred states moves a distance by a few hundredths (on the quickstart the Gaussian fit's
spectrum distance is 0.838 +- 0.016 and its MMD 0.191 +- 0.010 over 4 draws), which is
more than two close rows differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ups.config import Config
from ups.data.pdebench import FieldSplit
from ups.eval.evaluation import MODEL_CHUNK
from ups.eval.loading import Models, Sampler
from ups.eval.probabilistic import energy_spectrum, gaussian_samples, median_bandwidth, mmd, spectrum_distance
from ups.models.diffusion import sample
from ups.training.batches import tail_start

MAX_STATES = 1000
EXAMPLES = 3  # fields per set kept for the report's picture
DRAWS = 4
PRIOR, GAUSSIAN, TRAIN = "steady_prior", "gaussian_fit", "train_states"


@dataclass
class PriorResult:
    n_states: int
    first_time: int
    bandwidth: float
    rows: dict[str, dict[str, float]]
    spectra: dict[str, list[float]]  # held_out and each row
    examples: dict[str, list[list[float]]]

    def as_dict(self) -> dict[str, Any]:
        return {"n_states": self.n_states, "first_time": self.first_time, "mmd_bandwidth": self.bandwidth,
                "rows": self.rows, "spectra": self.spectra, "examples": self.examples}


def long_time_states(split: FieldSplit, cfg: Config, n_trajectories: int) -> tuple[np.ndarray, int]:
    """Fields [<= MAX_STATES, X] from the tail of the first `n_trajectories`, and the tail's first time."""
    first = tail_start(split.n_times, cfg.steady_prior.tail_fraction)
    times = list(range(first, split.n_times))
    items = [(i, t) for i in range(min(n_trajectories, len(split))) for t in times]
    if len(items) > MAX_STATES:
        items = [items[k] for k in np.linspace(0, len(items) - 1, MAX_STATES).round().astype(int)]
    # A single state is read as the second half of the pair (t - 1, t), as training reads it.
    return split.read_pairs([(i, t - 1) for i, t in items], 1)[:, 1].astype(np.float64), first


@torch.no_grad()
def prior_samples(cfg: Config, models: Models, prior: Sampler, n: int, device: torch.device,
                  seed: int) -> np.ndarray:
    gen = torch.Generator().manual_seed(seed)
    codec, out = models.codec, []
    for lo in range(0, n, MODEL_CHUNK):
        shape = (min(MODEL_CHUNK, n - lo), codec.tokens, codec.dim)
        z = prior.to_latent(sample(prior.model, None, shape, cfg.diffusion.sample_steps, cfg.diffusion, gen).to(device))
        out.append(codec.decode(z).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def evaluate_prior(cfg: Config, models: Models, prior: Sampler, held_out: FieldSplit, train: FieldSplit,
                   device: torch.device) -> PriorResult:
    n_eval = min(len(held_out), cfg.eval.max_samples or len(held_out))
    held, first = long_time_states(held_out, cfg, n_eval)
    train_states, _ = long_time_states(train, cfg, len(train))
    draws = [{PRIOR: prior_samples(cfg, models, prior, len(held), device, seed),
              GAUSSIAN: gaussian_samples(train_states, len(held), np.random.default_rng(seed))}
             for seed in range(cfg.eval.seed, cfg.eval.seed + DRAWS)]
    sets = {**draws[0], TRAIN: train_states}  # the first draw's spectra and fields for the picture
    bandwidth = median_bandwidth(held)  # one kernel for every row, so the rows compare
    rows = {name: _distances([d[name] for d in draws] if name in draws[0] else [x], held, bandwidth)
            for name, x in sets.items()}
    spectra = {"held_out": energy_spectrum(held).tolist(), **{k: energy_spectrum(x).tolist() for k, x in sets.items()}}
    examples = {"held_out": held[:EXAMPLES].tolist(), **{k: x[:EXAMPLES].tolist() for k, x in sets.items()}}
    return PriorResult(len(held), first, bandwidth, rows, spectra, examples)


def _distances(sets: list[np.ndarray], held: np.ndarray, bandwidth: float) -> dict[str, float]:
    """Each metric's mean over `sets` and its std (0 for a single set)."""
    values = {"spectrum_distance": [spectrum_distance(x, held) for x in sets],
              "mmd": [mmd(x, held, bandwidth) for x in sets]}
    return {**{k: float(np.mean(v)) for k, v in values.items()},
            **{f"{k}_std": float(np.std(v)) for k, v in values.items()}, "draws": len(sets)}
