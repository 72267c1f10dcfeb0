"""Batches of latent states for the training loop, from memory or streamed from disk.

A split small enough (`data.preload`, auto: ≤512 MiB) is encoded to latents once
and indexed on the device; a larger one (real PDEBench files are GBs) is read
per batch from the HDF5 file and encoded on the fly. Either way item k always
means the same (trajectory, time) pair, so the data order — and with it a
resumed run — does not depend on how the data is held.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ups.data.pdebench import FieldSplit
from ups.errors import DataError
from ups.models.latent import LatentCodec

ENCODE_CHUNK = 64


class LatentSource:
    """Items are (trajectory, time) pairs over `times`; `batch` returns latents at t (and t+stride)."""

    def __init__(
        self,
        split: FieldSplit,
        codec: LatentCodec,
        device: torch.device,
        *,
        stride: int,
        first_time: int = 0,
        pairs: bool = True,
        preload: bool | str = "auto",
        horizon: int = 1,
    ):
        self.split, self.codec, self.device = split, codec, device
        if not pairs:
            first_time = max(first_time, 1)  # the initial condition is never a long-time state
        self.stride, self.pairs, self.first_time = stride, pairs, first_time
        # horizon > 1: items are sequences z_t, z_{t+stride}, ..., z_{t+horizon*stride}.
        self.horizon = horizon if pairs else 0
        last = split.n_times - (stride * self.horizon if pairs else 0)
        self.n_times = last - first_time
        if self.n_times <= 0:
            raise DataError(
                f"{split.path}: {split.n_times} time points leave no "
                f"{'pairs with data.time_stride=' + str(stride) if pairs else 'states'} to train on"
            )
        self.n_items = len(split) * self.n_times
        self.latents: Optional[torch.Tensor] = None
        if split.should_preload(preload):
            self.latents = encode_split(split, codec, device)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        traj = torch.div(idx, self.n_times, rounding_mode="floor")
        t = idx % self.n_times + self.first_time
        if self.latents is not None:
            if not self.pairs:
                return (self.latents[traj, t],)
            return tuple(self.latents[traj, t + k * self.stride] for k in range(self.horizon + 1))
        if self.horizon > 1:
            return self._read_sequences(traj, t)
        return self._read(traj.cpu().tolist(), t.cpu().tolist())

    def _read_sequences(self, traj: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows, inverse = torch.unique(traj.cpu(), return_inverse=True)
        u = torch.from_numpy(self.split.trajectories(rows.tolist())).to(self.device)  # [R, T, X]
        inverse, t = inverse.to(self.device), t.to(self.device)
        return tuple(self.codec.encode(u[inverse, t + k * self.stride]) for k in range(self.horizon + 1))

    def _read(self, traj: list[int], t: list[int]) -> tuple[torch.Tensor, ...]:
        if self.pairs:
            u = torch.from_numpy(self.split.read_pairs(list(zip(traj, t)), self.stride)).to(self.device)
            z = self.codec.encode(u)
            return z[:, 0], z[:, 1]
        # A single state t is read as the second half of the pair (t-1, t): first_time >= 1.
        u = torch.from_numpy(self.split.read_pairs([(i, x - 1) for i, x in zip(traj, t)], 1)[:, 1])
        return (self.codec.encode(u.to(self.device)),)


def encode_split(split: FieldSplit, codec: LatentCodec, device: torch.device) -> torch.Tensor:
    """Latents of every trajectory of a split: [N, T, tokens, dim] on `device`."""
    chunks = []
    with torch.no_grad():
        for lo in range(0, len(split), ENCODE_CHUNK):
            rows = list(range(lo, min(lo + ENCODE_CHUNK, len(split))))
            u = torch.from_numpy(np.ascontiguousarray(split.trajectories(rows))).to(device)
            chunks.append(codec.encode(u))
    return torch.cat(chunks)


def tail_start(n_times: int, fraction: float) -> int:
    """First time index of the last `fraction` of a trajectory (at least one state, never t=0)."""
    return max(1, n_times - max(1, math.ceil(fraction * n_times)))
