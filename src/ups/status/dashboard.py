"""What `ups status` knows about a run: gathered once, then printed as text or JSON.

The facts come from the files alone (`stage_status.json`, `metadata.json`, the
directory listing, the outputs' bytes), so the dashboard works on a directory a
trainer is writing right now, on a copy, or on the remote store. It only reads.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from ups.errors import StatusFileError
from ups.eval.goodput_view import goodput_facts
from ups.status.rundir import RunDir
from ups.resume.layout import METADATA_FILE, STAGE_NAMES, STAGE_OUTPUTS, STATE_DIR, STATUS_FILE
from ups.resume.lock import LOCK_FILE
from ups.resume.tracker import StageStatus, parse_status

PIPELINE_KEYS = ("trained", "trained_at", "last_small_eval", "last_small_eval_at", "last_full_eval",
                 "last_full_eval_at", "config_hash", "config_path", "config_overrides")


def parse_time(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def seconds_since(text: Optional[str], now: datetime) -> Optional[float]:
    dt = parse_time(text)
    return None if dt is None else max(0.0, (now - dt).total_seconds())


def gather(uri: str | Path, verify: str = "sha256", now: Optional[datetime] = None) -> dict[str, Any]:
    """Every fact the dashboard shows. Raises CheckpointError / StatusFileError / RemoteError."""
    now = now or datetime.now(timezone.utc)
    loc = RunDir(uri)
    loc.require_dir()
    status = read_status(loc)
    metadata, warnings = read_metadata(loc)
    files = loc.files()
    trainer = live_trainer(loc)
    stages = {name: stage_facts(loc, name, status, files, trainer, verify, now) for name in STAGE_NAMES}
    return {
        "location": loc.display,
        "checked_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "schema_version": status.get("schema_version"),
        "created_at": status.get("created_at"),
        "trainer": trainer,
        "resume_from": None if loc.is_local else loc.uri,  # a remote copy continues on another machine
        "stages": stages,
        "pipeline": {k: metadata.get(k) for k in PIPELINE_KEYS if k in metadata},
        "wandb": metadata.get("training_wandb"),
        "files": {name: info["size"] for name, info in files.items()},
        "goodput": goodput_facts(status),
        "warnings": warnings,
    }


def read_status(loc: RunDir) -> dict[str, Any]:
    """The parsed, checked status file; missing or corrupt is a StatusFileError naming the fix."""
    data = loc.read_bytes(STATUS_FILE)
    if data is None:
        raise StatusFileError(
            f"no {STATUS_FILE} in {loc.display}: training has not started there, or this is not a ups "
            f"checkpoint directory. Start with: python scripts/train.py --config <config> --stage all"
            + (f"; if stage outputs are there, rebuild it: ups status --rebuild {loc.display}" if loc.is_local else "")
        )
    if loc.is_local:
        return parse_status(data, str(loc.local_path / STATUS_FILE), str(loc.local_path))
    try:
        return parse_status(data, f"{loc.uri}/{STATUS_FILE}", loc.uri)
    except StatusFileError as e:
        # --resume-from fetches only what the status names, so it cannot repair a corrupt one
        raise StatusFileError(f"{e} (copy the whole prefix first, e.g. `aws s3 sync {loc.uri} DIR`, then "
                              "`ups status --rebuild DIR`)") from e


def read_metadata(loc: RunDir) -> tuple[dict[str, Any], list[str]]:
    """metadata.json holds no training progress: a corrupt one is a warning, not an error."""
    try:
        data = loc.read_json(METADATA_FILE)
    except ValueError as e:
        return {}, [f"{METADATA_FILE} is corrupt ({e}); pipeline facts and the W&B run are not shown"]
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return {}, [f"{METADATA_FILE} does not hold a JSON object; ignored"]
    return data, []


def live_trainer(loc: RunDir) -> Optional[dict[str, Any]]:
    """Who holds the trainer lock, and whether that process is alive (local directories only).

    The trainer's `flock` is never taken here (that could make a starting trainer
    fail); the lock file's text names the holder and is emptied on release, so a
    non-empty text with a live pid on this host means a trainer is running.
    """
    if not loc.is_local:
        return {"remote": True, "alive": None}  # the trainer's machine cannot be seen from a remote copy
    try:
        holder = json.loads((loc.local_path / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not holder.get("pid"):
        return None
    same_host = holder.get("host") == socket.gethostname()
    alive = _pid_alive(int(holder["pid"])) if same_host else None
    return {"pid": holder["pid"], "host": holder.get("host"), "since": holder.get("since"), "alive": alive}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _entry(status: dict[str, Any], stage: str) -> StageStatus:
    merged = dict(status["stages"].get(stage) or {})
    merged.update((status.get("details") or {}).get(stage) or {})
    return StageStatus.from_dict(merged)


def stage_state(entry: StageStatus, trainer: Optional[dict[str, Any]]) -> str:
    """A finer word than the stored status for an unfinished stage: running, interrupted or stopped."""
    if entry.status != "in_progress":
        return entry.status
    if trainer and trainer.get("alive"):
        return "running"
    if entry.interrupted_at:
        return "interrupted"
    if trainer is not None and trainer.get("alive") is False:
        return "stopped"  # the holder died without saying so: a crash, OOM kill or kill -9
    return "in_progress"


def stage_facts(loc: RunDir, name: str, status: dict[str, Any], files: dict[str, Any],
                trainer: Optional[dict[str, Any]], verify: str, now: datetime) -> dict[str, Any]:
    entry = _entry(status, name)
    saved = entry.resume_state or {}
    facts = {k: v for k, v in entry.to_dict().items() if k not in ("config", "outputs", "resume_state")}
    facts["state"] = stage_state(entry, trainer)
    facts["last_save"] = ({"step": saved.get("step"), "epoch": saved.get("epoch"), "at": saved.get("saved_at"),
                           "file": saved.get("file"),
                           "seconds_ago": seconds_since(saved.get("saved_at"), now)} if saved else None)
    facts["states_on_disk"] = {f: files[f]["size"] for f in files if f.startswith(f"{STATE_DIR}/{name}/")}
    facts["outputs"] = {f: check_output(loc, f, (entry.outputs or {}).get(f), files, verify)
                        for f in STAGE_OUTPUTS[name]}
    return facts


def check_output(loc: RunDir, name: str, recorded: Optional[dict[str, Any]], files: dict[str, Any],
                 verify: str) -> dict[str, Any]:
    """Whether an output file still is what the status recorded: verified / altered / missing / ..."""
    size = files.get(name, {}).get("size") if name in files else None
    out: dict[str, Any] = {"size": size, "recorded_size": (recorded or {}).get("size")}
    if name not in files:
        out["check"] = "missing" if recorded else "absent"
    elif not recorded:
        out["check"] = "unrecorded"
    elif recorded.get("size") is not None and size != recorded["size"]:
        out["check"] = "altered"
        out["problem"] = f"size {size} bytes, recorded {recorded['size']}"
    elif verify == "sha256" and recorded.get("sha256"):
        same = loc.sha256(name) == recorded["sha256"]
        out["check"] = "verified" if same else "altered"
        if not same:
            out["problem"] = "sha256 differs from the one recorded"
    else:
        out["check"] = "size-ok" if verify == "size" else "unchecked"
    return out

