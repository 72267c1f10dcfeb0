"""SIGTERM / SIGINT: finish the step, save, record, exit 143 / 130.

A preempted cloud instance gets SIGTERM and a short grace period. Dying
mid-step would lose up to a checkpoint interval; instead the handler only sets
a flag, the training loop notices it after the current step, saves the state
synchronously and raises `TrainingInterrupted`. A second Ctrl-C is not caught,
except in a torchrun worker (`escalate=False`): Ctrl-C reaches the worker from
the terminal and again from torchrun, which forwards it — and which itself
escalates to SIGKILL if the worker does not exit in time.
"""

from __future__ import annotations

import signal
import sys
from typing import Optional

from ups.errors import UpsError

HANDLED = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(UpsError):
    """Training stopped on a signal after saving its state; exit code 128 + signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequest:
    """Installs the handlers; `signum` names the stop signal once one arrives (None before)."""

    def __init__(self, escalate: bool = True) -> None:
        self.signum: Optional[int] = None
        self.escalate = escalate
        self._previous: dict[int, object] = {}

    def install(self) -> "StopRequest":
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is None:
            self.signum = signum
            name = signal.Signals(signum).name
            print(f"\n⚠️  {name} received: finishing the current step, then saving and exiting", flush=True)
            sys.stdout.flush()
        # A second SIGINT means "now": fall back to the default behaviour.
        if self.escalate:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> "StopRequest":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()
