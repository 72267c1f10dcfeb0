"""Stops and destroys you asked for, recorded on this machine before they are sent.

Why: Vast shows an instance stopped on request exactly as one paused by an outbid
(`cur_state == intended_status == next_state == "stopped"`, dstackai/dstack
src/dstack/_internal/core/backends/vastai/compute.py), so `vast_launch.py watch` would
take your stop for a pause and rent a replacement. `vast_launch.py stop/destroy` writes
the instance id here first (and into the remote copy when given `--checkpoint-remote`,
for a watch on another machine); `watch` reads both. A stop made in Vast's web console
is recorded nowhere, and is treated as a pause.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ups.resume.atomic import atomic_write_bytes

LEDGER_NAME = "vast_requested_stops.json"


def ledger_path() -> Path:
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "ups" / LEDGER_NAME


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_stop(instance_id: int, action: str) -> Path:
    path = ledger_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _load(path)
    data[str(instance_id)] = {"action": action, "unix": time.time()}
    atomic_write_bytes(path, json.dumps(data, sort_keys=True, indent=1).encode())
    return path


def is_stop_requested(instance_id: int) -> bool:
    return str(instance_id) in _load(ledger_path())
