"""Run `ups.eval.protocol` on a config's evaluation split with the checkpoint's operator.

The operator is one-step and Markov: it starts from the last given frame (encoded),
and is stepped `predicted` times in latent space, each step decoded for scoring.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from ups.config import Config
from ups.data.pdebench import FieldSplit
from ups.errors import ConfigError
from ups.eval.loading import Models
from ups.eval.protocol import Protocol, ProtocolResult, evaluate_protocol

OPERATOR = "operator"
BATCH = 50


def protocol_of(cfg: Config, n_times: int) -> Protocol:
    """The protocol for trajectories of `n_times` snapshots; a ConfigError if they are too short."""
    p = cfg.eval.protocol
    if p is None:
        raise ConfigError("eval.protocol is not set; add an eval.protocol section (see configs/pdebench_burgers.yaml)")
    stride = cfg.data.time_stride
    frames = (n_times - 1) // stride + 1
    predicted = p.predicted or frames - p.given
    if predicted < 1 or p.given + predicted > frames:
        raise ConfigError(
            f"eval.protocol.given={p.given} + predicted={p.predicted} frames exceed the {frames} frames that "
            f"{n_times} snapshots hold every data.time_stride={stride}; lower them (predicted: null takes the rest)"
        )
    return Protocol(time_stride=stride, given=p.given, predicted=predicted, max_samples=p.max_samples)


def heat_viscosity(cfg: Config) -> float:
    """The heat baseline's coefficient: the one in the equation the data solves."""
    if cfg.eval.protocol and cfg.eval.protocol.viscosity:
        return cfg.eval.protocol.viscosity
    gen = cfg.data.generator
    return gen.viscosity / math.pi if gen.protocol == "pdebench" else gen.viscosity


def operator_predictor(models: Models, device: torch.device):
    @torch.no_grad()
    def predict(given: np.ndarray, steps: int) -> np.ndarray:
        z = models.codec.encode(torch.from_numpy(given[:, -1].astype(np.float32)).to(device))
        out = []
        for _ in range(steps):
            z = models.operator(z).float()
            out.append(models.codec.decode(z).cpu().numpy())
        return np.stack(out, axis=1)

    return predict


def batches(data: FieldSplit, n: int) -> Iterator[np.ndarray]:
    for lo in range(0, min(n, len(data)), BATCH):
        yield data.trajectories(list(range(lo, min(lo + BATCH, n, len(data)))))


def run_protocol(cfg: Config, models: Models, data: FieldSplit, device: torch.device) -> ProtocolResult:
    protocol = protocol_of(cfg, data.n_times)
    t = data.t
    dt = float(t[cfg.data.time_stride] - t[0])
    return evaluate_protocol(batches(data, protocol.max_samples), protocol, dt, heat_viscosity(cfg),
                             {OPERATOR: operator_predictor(models, device)})
