"""The one training loop, shared by every stage, resumable down to the step.

Everything that decides the next weights lives in the resumable state: model,
optimizer, LR schedule, EMA, grad scaler, the stage's noise generator, the
global torch/NumPy/Python RNGs, the position in the data order (epoch, batch),
and the best-so-far bookkeeping. The data order of epoch e is a permutation
seeded by (seed, stage, e), so the position alone recreates it. Restoring the
state and continuing therefore gives the same weights, bit for bit on CPU, as
never having stopped.

The loop never forces a host sync per step: losses accumulate on the device
and are read only every `logging.log_every_steps` steps.

Under torchrun the same loop runs in every rank; `StageTraining.group`
(`ups.parallel`) wraps the model in DDP, hands each rank its slice
of the step's global batch, keeps every rank's own noise and RNG streams in the
saved state, and makes the ranks agree on when to stop and save. Alone, the
group is the identity and nothing changes.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

import torch
from torch import nn

from ups.config import ResolvedStage
from ups.models.ema import EMA
from ups.resume.faults import crash_point
from ups.resume.files import STATE_FORMAT
from ups.resume.rng import capture_rng, restore_rng
from ups.resume.signals import StopRequest, TrainingInterrupted
from ups.training.checkpointer import Checkpointer
from ups.parallel import Solo
from ups.training.guard import FiniteGuard

MAX_VAL_BATCHES = 16


class BatchSource(Protocol):
    n_items: int

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]: ...


LossFn = Callable[[nn.Module, tuple, torch.Generator, EMA], torch.Tensor]


@dataclass
class StageTask:
    """What a stage trains: built by `ups.training.tasks`, trained by `Trainer`."""

    model: nn.Module
    loss: LossFn
    train: BatchSource
    val: Optional[BatchSource]
    extra: dict[str, Any] = field(default_factory=dict)  # stored beside the weights


@dataclass
class StageTraining:
    """How a stage's training goes: settings, identity, and the checkpointer it calls after every step."""

    name: str
    index: int
    settings: ResolvedStage
    fingerprint: str
    seed: int
    device: torch.device
    checkpointer: Checkpointer
    stop: StopRequest
    log: Any  # ups.training.metrics.MetricsLogger
    precision: str = "fp32"
    compile: bool = False
    log_every: int = 10
    global_offset: int = 0
    resume: Optional[dict[str, Any]] = None
    group: Solo = field(default_factory=lambda: Solo(torch.device("cpu")))  # a torchrun rank, or alone
    warn: Callable[[str], None] = print  # a warning for the log and the status (e.g. a diverging loss)


@dataclass
class Position:
    epoch: int = 0
    batch: int = 0
    step: int = 0


def steps_per_epoch(n_items: int, batch_size: int) -> int:
    return max(1, n_items // batch_size)


def epoch_order(n_items: int, seed: int, stage_index: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(_mix(seed, stage_index, epoch))
    return torch.randperm(n_items, generator=g)


def _mix(*parts: int) -> int:
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 63)
    return h


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warmup, then cosine decay to 10% of the base rate."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class Trainer:
    """Owns the moving parts of one stage's training; `train_to_end()` trains to the end."""

    def __init__(self, task: StageTask, training: StageTraining):
        s = training.settings
        self.task, self.training = task, training
        self.model = task.model.to(training.device)
        wrapped = training.group.wrap(self.model)
        self.forward_model = torch.compile(wrapped) if training.compile else wrapped
        self.spe = steps_per_epoch(task.train.n_items, s.batch_size)
        self.total_steps = s.epochs * self.spe
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(s.warmup_steps, self.total_steps))
        self.ema = EMA(self.model, s.ema_decay)
        noise_seed = training.group.rank_seed(_mix(training.seed, training.index, 7919))
        self.gen = torch.Generator(device=training.device).manual_seed(noise_seed)
        self.scaler = torch.amp.GradScaler(training.device.type, enabled=training.precision == "fp16")
        self.pos = Position()
        self.best: dict[str, Any] = {"val_loss": None, "step": None}
        self.loss_sum = torch.zeros((), device=training.device)
        self.loss_count = 0
        self.guard = FiniteGuard(training.name, training.device, training.warn)
        if training.resume is not None:
            self._restore(training.resume)

    # --- state ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT, "stage": self.training.name, "fingerprint": self.training.fingerprint,
            "step": self.pos.step, "epoch": self.pos.epoch, "batch_in_epoch": self.pos.batch,
            "total_steps": self.total_steps,
            "model": self.model.state_dict(), "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(), "generator": self.gen.get_state(), "rng": capture_rng(),
            "best": dict(self.best),
            "loss_accum": {"sum": self.training.group.mean(self.loss_sum), "count": self.loss_count},
            **self.training.group.rank_states(self._rank_state()),  # in a group: each rank's own streams and sum
        }

    def _rank_state(self) -> dict[str, Any]:
        """What differs between the ranks of a group: each one's noise, RNGs and loss sum."""
        return {"generator": self.gen.get_state(), "rng": capture_rng(), "loss_sum": self.loss_sum}

    def _restore(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        self.ema.load_state_dict(st["ema"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
        self.scaler.load_state_dict(st["scaler"])
        mine = self.training.group.own_state(st)
        own = mine or {"generator": st["generator"], "rng": st["rng"], "loss_sum": st["loss_accum"]["sum"]}
        self.gen.set_state(own["generator"].to(self.gen.get_state().device))
        restore_rng(own["rng"])
        self.pos = Position(epoch=st["epoch"], batch=st["batch_in_epoch"], step=st["step"])
        if mine is None and self.training.group.rank:  # a rank the saving group did not have
            t = self.training
            self.gen.manual_seed(t.group.rank_seed(_mix(t.seed, t.index, 7919, self.pos.step)))
        self.best = dict(st["best"])
        self.loss_sum = own["loss_sum"].to(self.training.device)
        self.loss_count = st["loss_accum"]["count"]

    def _checked_state(self) -> dict[str, Any]:
        self.guard.check(self._last_saved(), self._weights())  # a diverged state is never saved
        return self.state()

    def _last_saved(self) -> int:
        return self.training.checkpointer.last_saved_step

    # --- loop -------------------------------------------------------------

    def train_to_end(self) -> None:
        s, training = self.training.settings, self.training
        with self.training.log.progress(training.name, self.total_steps, self.pos.step) as bar:
            while self.pos.epoch < s.epochs:
                order = epoch_order(self.task.train.n_items, training.seed, training.index, self.pos.epoch)
                order = order.to(training.device)
                epoch = self.pos.epoch
                while self.pos.epoch == epoch:  # _after_step moves to the next epoch
                    self._step(order)
                    bar.update(self.pos.step)
                    self._after_step()
        self.training.group.drain()
        self.training.checkpointer.wait()
        self.guard.check(self._last_saved(), self._weights())  # nor recorded as the stage's output

    def _weights(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.ema.module.parameters()]

    def _step(self, order: torch.Tensor) -> None:
        bs, b = self.training.settings.batch_size, self.pos.batch
        idx = order[b * bs:(b + 1) * bs] if self.task.train.n_items >= bs else order
        batch = self.task.train.batch(self.training.group.shard(idx))
        self.model.train()
        with self._autocast():
            loss = self.task.loss(self.forward_model, batch, self.gen, self.ema)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.training.settings.grad_clip)
        self.guard.observe(self.pos.step + 1, loss.detach(), None if self.scaler.is_enabled() else norm)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        self.ema.update(self.model)
        self.loss_sum += loss.detach().float()
        self.loss_count += 1
        self.pos.step += 1
        self.pos.batch += 1

    def _after_step(self) -> None:
        """Log, finish the epoch, save or stop — in that order, so a save sees a settled state."""
        training = self.training
        training.checkpointer.meter.step_done(self.pos.step)
        crash_point(f"after-step:{training.name}:{self.pos.step}")
        if self.pos.step % training.log_every == 0:
            self._log_train()
        if self.pos.batch >= self.spe:
            self._end_epoch()
        signum = training.checkpointer.save(self.pos.step, self._checked_state, last=self.pos.step >= self.total_steps,
                                       stop=training.stop.signum or 0)
        if signum:
            raise TrainingInterrupted(
                signum,
                f"stage '{training.name}' interrupted at step {self.pos.step}/{self.total_steps}; state saved. "
                "Rerun with --auto-resume to continue from here.",
            )

    def _end_epoch(self) -> None:
        val = self._val_loss()
        if val is not None and not math.isfinite(val):
            self.guard.fail(self.pos.step, self._last_saved(), f"the validation loss is {val}")
        self.pos.epoch += 1
        self.pos.batch = 0
        if val is not None:
            if self.best["val_loss"] is None or val < self.best["val_loss"]:
                self.best = {"val_loss": val, "step": self.pos.step}
            self.training.log.log(self._record("val", val))

    def _log_train(self) -> None:
        self.guard.check(self._last_saved())
        mean = self.training.group.mean(self.loss_sum / max(self.loss_count, 1)).item()
        self.guard.watch_growth(self.pos.step, mean)
        self.loss_sum.zero_()
        self.loss_count = 0
        self.training.log.log(self._record("train", mean))

    def _record(self, kind: str, loss: float) -> dict[str, Any]:
        return {
            "stage": self.training.name, "kind": kind, "epoch": self.pos.epoch, "step": self.pos.step,
            "global_step": self.training.global_offset + self.pos.step, "loss": loss,
            "lr": self.opt.param_groups[0]["lr"],
        }

    @torch.no_grad()
    def _val_loss(self) -> Optional[float]:
        val = self.task.val
        if val is None or val.n_items == 0:
            return None
        t = self.training
        bs = t.settings.batch_size
        g = torch.Generator(device=t.device).manual_seed(_mix(t.seed, t.index, 104729))
        model = self.ema.module
        total = torch.zeros((), device=self.training.device)
        n = min(MAX_VAL_BATCHES, max(1, math.ceil(val.n_items / bs)))
        for b in range(n):
            idx = torch.arange(b * bs, min((b + 1) * bs, val.n_items), device=self.training.device)
            with self._autocast():
                total += self.task.loss(model, val.batch(idx), g, self.ema).float()
        return (total / n).item()

    def _autocast(self):
        if self.training.precision == "bf16":
            return torch.autocast(self.training.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()
