"""Run `scripts/train.py` as a child process, passing stop signals through.

The orchestrator trains in a child process (not in-process) so training owns
its signal handling, its lock and its GPU memory, and exits with its own code:
143 after SIGTERM means "saved, rerun to continue", which the orchestrator
passes on instead of going on to evaluate a half-trained model. A SIGTERM or
SIGINT sent to the orchestrator alone (a scheduler stopping the job) is
forwarded, so the child still saves before exiting.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

TRAIN_SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "train.py"


def train_command(config: str, extra: Sequence[str], auto_resume: bool) -> list[str]:
    """`python scripts/train.py --config C --stage all [--auto-resume] EXTRA...` (argv, never a shell string).

    From an installed package without the checkout's scripts/, `python -m ups.cli
    train` runs the same `main`.
    """
    head = [sys.executable, str(TRAIN_SCRIPT)] if TRAIN_SCRIPT.is_file() else [sys.executable, "-m", "ups.cli", "train"]
    return [*head, "--config", config, "--stage", "all", *(["--auto-resume"] if auto_resume else []), *extra]


def run_forwarding_signals(cmd: list[str]) -> int:
    """Run `cmd`, forward SIGTERM/SIGINT to it while it runs, return its exit code."""
    print(f"Running: {shlex.join(cmd)}", flush=True)
    child = subprocess.Popen(cmd)

    def forward(signum, frame) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
