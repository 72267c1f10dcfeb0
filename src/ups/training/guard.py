"""Stop a stage whose loss or weights stop being finite; warn when the loss runs away.

One NaN (a NaN in the data, an infinite learning rate, an overflow) makes every later
weight NaN, and without a guard the stage would still be recorded `completed` and later
skipped as verified. The guard keeps the loop free of per-step host syncs: each step
folds "is this loss (and gradient norm) finite?" into a device tensor holding the first
bad step, and that tensor is read only where the loop syncs anyway — when it logs,
before it saves a state, and before the stage's outputs are written. A non-finite value
raises `NonFiniteLoss` naming the step and the last state saved before it; that state
stays on disk, so the failure is recorded with its reason and the stage can resume.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Optional

import torch

from ups.errors import UpsError

GROWTH_WARN_FACTOR = 1000.0  # three orders of magnitude above the lowest logged loss


class NonFiniteLoss(UpsError):
    """The loss, a gradient or the weights became NaN/Inf: the stage stops (exit 1)."""

    exit_code = 1


class FiniteGuard:
    def __init__(self, stage: str, device: torch.device, warn: Callable[[str], None] = print):
        self.stage, self.warn = stage, warn
        self._first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self._lowest: Optional[float] = None
        self._warned = False

    def observe(self, step: int, loss: torch.Tensor, grad_norm: Optional[torch.Tensor]) -> None:
        """Record `step` as the first bad one if its loss or gradient norm is not finite (no sync)."""
        bad = ~torch.isfinite(loss.float())
        if grad_norm is not None:
            bad = bad | ~torch.isfinite(grad_norm.float())
        fresh = bad & (self._first_bad < 0)
        self._first_bad = torch.where(fresh, torch.full_like(self._first_bad, step), self._first_bad)

    def check(self, last_saved_step: int, weights: Iterable[torch.Tensor] = ()) -> None:
        """Raise NonFiniteLoss if a bad step was seen, or if any of `weights` is not finite."""
        step = int(self._first_bad.item())
        if step >= 0:
            self.fail(step, last_saved_step, "the loss or its gradient is NaN/Inf")
        finite = [torch.isfinite(w).all() for w in weights]
        if finite and not bool(torch.stack(finite).all()):
            self.fail(None, last_saved_step, "the weights hold NaN/Inf")

    def fail(self, step: Optional[int], last_saved_step: int, what: str) -> None:
        at = f"at step {step}" if step is not None else "by the end of training"
        kept = (f"the last finite state (step {last_saved_step}) is kept" if last_saved_step
                else "no state was saved before it")
        raise NonFiniteLoss(
            f"stage '{self.stage}' stopped: non-finite values {at} ({what}); {kept}. Lower the learning rate "
            f"(stages.{self.stage}.lr or training.learning_rate) or check the data for NaN/Inf, then rerun")

    def watch_growth(self, step: int, mean_loss: float) -> None:
        """Warn once when the logged loss grows by orders of magnitude over its lowest value."""
        if not math.isfinite(mean_loss):
            return
        if self._lowest is None or mean_loss < self._lowest:
            self._lowest = mean_loss
            return
        if not self._warned and self._lowest > 0 and mean_loss > GROWTH_WARN_FACTOR * self._lowest:
            self._warned = True
            self.warn(f"stage '{self.stage}': the training loss grew from {self._lowest:.3g} to {mean_loss:.3g} "
                      f"by step {step} (over {GROWTH_WARN_FACTOR:g}x): training is diverging; lower the "
                      f"learning rate (stages.{self.stage}.lr)")
