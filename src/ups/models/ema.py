"""Exponential moving average of a model's weights: the `*_ema.pt` each stage ships.

The EMA is part of the resumable training state, so it must be exact to resume:
its warm-up depends only on `num_updates`, a Python int saved with it, never on a
tensor read back from the device. `update` never calls `.item()` or otherwise syncs
with the device, so it costs no pipeline stall per step.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under `torch.compile` (`_orig_mod`) and DDP (`.module`) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


class EMA:
    """`.module` is a frozen deep copy; `update(model)` moves it toward `model`.

    Effective decay at update n (0-based) is min(decay, (1 + n) / (10 + n)), so the
    average forgets its random initialisation quickly early on. Buffers (e.g.
    norm statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        source = unwrap(model)
        ema_params = list(self.module.parameters())
        params = list(source.parameters())
        if len(ema_params) != len(params):
            raise ValueError(f"EMA holds {len(ema_params)} parameters, the model has {len(params)}")
        weight = 1.0 - self.current_decay()
        # lerp_(ema, p, w) = ema + w * (p - ema): one fused kernel per dtype/device group.
        torch._foreach_lerp_(ema_params, [p.detach() for p in params], weight)
        for ema_buf, buf in zip(self.module.buffers(), source.buffers()):
            ema_buf.copy_(buf)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore decay, update count and weights saved by `state_dict`."""
        self.module.load_state_dict(state["module"])
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
