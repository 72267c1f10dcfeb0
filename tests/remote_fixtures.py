"""Checkpoint directories built by hand through the real StageTracker: fast inputs for the
remote-store, sync and download tests (no training needed); and what a test reads of a
`file://` remote while a real training process writes to it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

from ups.resume.atomic import atomic_write_bytes, file_digest
from ups.resume.layout import STATE_DIR, state_file_name
from ups.resume.tracker import StageTracker


def payload(name: str, size: int = 4096, salt: str = "") -> bytes:
    """Deterministic bytes standing in for a torch file."""
    seed = hashlib.sha256(f"{name}{salt}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def complete_stage(ckpt: Path, stage: str, files: tuple[str, ...], salt: str = "") -> dict:
    tracker = StageTracker(ckpt, verbose=False)
    outputs = {}
    for name in files:
        atomic_write_bytes(ckpt / name, payload(name, salt=salt))
        outputs[name] = file_digest(ckpt / name)
    tracker.mark_stage_started(stage, total_epochs=2, total_steps=20, fingerprint=f"fp-{stage}")
    tracker.mark_stage_completed(stage, files[-1], outputs=outputs, fingerprint=f"fp-{stage}")
    return outputs


def save_state(ckpt: Path, stage: str, step: int, start: bool = False) -> str:
    """Write a state file and record it the way the runner does; returns its relative name."""
    tracker = StageTracker(ckpt, verbose=False)
    if start:
        tracker.mark_stage_started(stage, total_epochs=2, total_steps=20, fingerprint=f"fp-{stage}")
    path = ckpt / STATE_DIR / stage / state_file_name(step)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, payload(f"{stage}{step}", size=8192))
    record = {"file": f"{stage}/{path.name}", "step": step, "epoch": 0, **file_digest(path), "saved_at": "t"}
    tracker.record_progress(stage, step=step, epoch=0, resume_state=record)
    return f"{STATE_DIR}/{stage}/{path.name}"


def operator_done_diffusion_running(ckpt: Path, step: int = 8) -> str:
    """operator completed (2 outputs), diff_residual in progress with one saved state."""
    complete_stage(ckpt, "operator", ("operator.pt", "operator_ema.pt"))
    return save_state(ckpt, "diff_residual", step, start=True)


def remote_status(remote: Path) -> Optional[dict]:
    path = remote / "stage_status.json"
    return json.loads(path.read_text()) if path.exists() else None  # written atomically: never torn


def remote_state(remote: Path, stage: str) -> Optional[dict]:
    status = remote_status(remote) or {}
    return ((status.get("details") or {}).get(stage) or {}).get("resume_state")


def wait_until(proc: subprocess.Popen, condition: Callable[[], bool], timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"training ended (rc {proc.returncode}) before the condition held"
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.01)
