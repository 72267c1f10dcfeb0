"""Two small records next to the remote copy: how the run ended, and that it is alive.

Why: the watcher on your machine must tell a finished run from a lost instance, and a
hung run from a working one, but an instance cannot say so through Vast: its own API key
may only start, stop or destroy it (no labels), and Vast shows an outbid instance
exactly as one stopped on request (`cur_state == intended_status == next_state ==
"stopped"`, dstackai/dstack src/dstack/_internal/core/backends/vastai/compute.py). The
remote copy is the one place both sides can reach, so:

- `ups_outcome.json` — written before the run stops its instance (or by
  `vast_launch.py stop/destroy` before it asks Vast): what ended, who ended it, the
  exit code, when, and which instance;
- `ups_heartbeat.json` — rewritten after each publish of the checkpoint sync (data and
  status first, this last): how far the run got, and when.

Both are tiny JSON files at the remote's root; a reader that finds one missing or torn
gets None, never an exception. A run whose only remote is its W&B run keeps the same two
records in the run's summary instead (`ups.remote.wandb_outcome`).
"""

from __future__ import annotations

import json
import os
import posixpath
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional

OUTCOME_FILE = "ups_outcome.json"
HEARTBEAT_FILE = "ups_heartbeat.json"
COMPLETED, FAILED, STOP_REQUESTED = "completed", "failed", "stop_requested"
OUTCOMES = (COMPLETED, FAILED, STOP_REQUESTED)
INSTANCE_ENV = "CONTAINER_ID"  # set by Vast inside every instance


def utc_stamp(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def own_instance_id() -> Optional[int]:
    raw = os.environ.get(INSTANCE_ENV, "")
    return int(raw) if raw.isdigit() else None


@dataclass(frozen=True)
class Outcome:
    outcome: str  # completed | failed | stop_requested
    instance_id: Optional[int]
    exit_code: Optional[int] = None
    phase: str = ""  # where a failure happened: clone, install, data, train, ...
    by: str = "run"  # run (the instance itself) or user (vast_launch.py stop/destroy)
    action: str = ""  # stop | destroy | none: what follows the record
    unix: float = 0.0
    at: str = ""


@dataclass(frozen=True)
class Heartbeat:
    tag: str  # `<stage>-step-<N>` or `<stage>-completed`
    instance_id: Optional[int]
    unix: float
    at: str


def new_outcome(outcome: str, *, instance_id: Optional[int], exit_code: Optional[int] = None,
                phase: str = "", by: str = "run", action: str = "") -> Outcome:
    """The record as of now, whichever store keeps it (a file here, a W&B summary key there)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r}: one of {', '.join(OUTCOMES)}")
    now = time.time()
    return Outcome(outcome, instance_id, exit_code, phase, by, action, now, utc_stamp(now))


def new_heartbeat(tag: str, instance_id: Optional[int]) -> Heartbeat:
    now = time.time()
    return Heartbeat(tag, instance_id, now, utc_stamp(now))


def outcome_from(record: Optional[dict]) -> Optional[Outcome]:
    """A stored outcome record, or None when it is missing or malformed."""
    if record is None or record.get("outcome") not in OUTCOMES:
        return None
    fields = Outcome.__dataclass_fields__
    return Outcome(**{k: v for k, v in record.items() if k in fields})


def heartbeat_from(record: Optional[dict]) -> Optional[Heartbeat]:
    """A stored heartbeat record, or None when it is missing or malformed."""
    if record is None or not isinstance(record.get("tag"), str):
        return None
    return Heartbeat(record["tag"], record.get("instance_id"), float(record.get("unix") or 0), str(record.get("at")))


def _fs(uri: str):
    from ups.remote.fsspec_store import parse_uri  # fsspec and the store's URI rules, lazily

    return parse_uri(uri)


def _write(fs: Any, root: str, name: str, record: dict) -> None:
    from fsspec.implementations.local import LocalFileSystem

    data = json.dumps(record, sort_keys=True).encode()
    path = posixpath.join(root, name)
    if isinstance(fs, LocalFileSystem):
        from ups.resume.atomic import atomic_write_bytes

        os.makedirs(root, exist_ok=True)
        atomic_write_bytes(path, data)  # a reader never sees half a record
    else:
        fs.pipe_file(path, data)  # an object appears only once its upload completes


def _read(uri: str, name: str) -> Optional[dict]:
    try:
        fs, root = _fs(uri)
        data = fs.cat_file(posixpath.join(root, name))
        record = json.loads(data)
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_outcome(uri: str, outcome: str, *, instance_id: Optional[int], exit_code: Optional[int] = None,
                  phase: str = "", by: str = "run", action: str = "") -> Outcome:
    record = new_outcome(outcome, instance_id=instance_id, exit_code=exit_code, phase=phase, by=by, action=action)
    fs, root = _fs(uri)
    _write(fs, root, OUTCOME_FILE, asdict(record))
    return record


def read_outcome(uri: str) -> Optional[Outcome]:
    return outcome_from(_read(uri, OUTCOME_FILE))


def read_heartbeat(uri: str) -> Optional[Heartbeat]:
    return heartbeat_from(_read(uri, HEARTBEAT_FILE))


def heartbeat_writer(store: Any) -> Callable[[Any], None]:
    """For `RemoteSync`: after a publish, record its tag and the time (an fsspec root, or the W&B run)."""
    fs, root = getattr(store, "fs", None), getattr(store, "root", None)
    if fs is None or root is None:
        run = getattr(store, "run", None)
        if run is None:
            return lambda snap: None
        from ups.remote.wandb_outcome import wandb_heartbeat_writer

        return wandb_heartbeat_writer(run)
    instance_id = own_instance_id()

    def beat(snap: Any) -> None:
        try:
            _write(fs, root, HEARTBEAT_FILE, asdict(new_heartbeat(snap.tag, instance_id)))
        except Exception:  # the heartbeat only informs the watcher; it must never stop the sync
            pass

    return beat
