"""What a remote copy of a checkpoint directory holds, decided from the status file alone.

A remote copy is a *snapshot*: the bytes of `stage_status.json` at one moment,
plus every file those bytes name (the outputs of completed stages, the
resumable state of unfinished ones), each with the digest the status records
for it. Uploading the named files first and the status last means the remote
never names a file it does not hold. These functions are pure (dicts in, dicts
out) so the rules are tested without a disk or a network.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from ups.resume.layout import STAGE_NAMES, STATE_DIR

COMPLETED = "completed"


@dataclass(frozen=True)
class NamedFile:
    """A file the status names, relative to the checkpoint directory (posix)."""

    name: str
    sha256: str
    size: int
    stage: str


@dataclass(frozen=True)
class Snapshot:
    status_bytes: bytes
    files: tuple[NamedFile, ...]
    tag: str
    extras: dict[str, bytes] = field(default_factory=dict)  # unverified side files (metadata, metrics)


def state_relpath(record: dict[str, Any]) -> str:
    """Where a `resume_state` record's file lives, relative to the checkpoint directory.

    The saver records `file` relative to `state/` ("<stage>/step-N.pt"); a record that
    already starts with `state/` is taken as it is.
    """
    name = str(record["file"]).lstrip("/")
    return name if name.startswith(f"{STATE_DIR}/") else f"{STATE_DIR}/{name}"


def _details(status: dict[str, Any], stage: str) -> dict[str, Any]:
    return (status.get("details") or {}).get(stage) or {}


def _stage_status(status: dict[str, Any], stage: str) -> Optional[str]:
    return ((status.get("stages") or {}).get(stage) or {}).get("status")


def named_files(status: dict[str, Any]) -> list[NamedFile]:
    """Every file the status vouches for, with its recorded digest.

    Completed stages vouch for their outputs; unfinished ones (in progress, failed)
    for their last resumable state. Entries without a digest name nothing: a
    remote copy must be verifiable.
    """
    files: list[NamedFile] = []
    for stage in _stages(status):
        details = _details(status, stage)
        if _stage_status(status, stage) == COMPLETED:
            for name, digest in (details.get("outputs") or {}).items():
                if _has_digest(digest):
                    files.append(NamedFile(name, digest["sha256"], int(digest["size"]), stage))
        else:
            record = details.get("resume_state")
            if record and _has_digest(record) and record.get("file"):
                files.append(NamedFile(state_relpath(record), record["sha256"], int(record["size"]), stage))
    return files


def _has_digest(d: Any) -> bool:
    return isinstance(d, dict) and bool(d.get("sha256")) and d.get("size") is not None


def _stages(status: dict[str, Any]) -> list[str]:
    listed = list((status.get("stages") or {}).keys())
    return [s for s in STAGE_NAMES if s in listed] + [s for s in listed if s not in STAGE_NAMES]


def snapshot_tag(status: dict[str, Any]) -> str:
    """A W&B alias naming how far the snapshot got: `<stage>-step-<N>` or `<stage>-completed`."""
    last_completed = None
    for stage in _stages(status):
        if _stage_status(status, stage) == COMPLETED:
            last_completed = stage
            continue
        record = _details(status, stage).get("resume_state")
        if record and record.get("step") is not None:
            return f"{stage}-step-{int(record['step'])}"
    return f"{last_completed}-completed" if last_completed else "empty"


def progress_key(status: Optional[dict[str, Any]]) -> tuple[tuple[int, int], ...]:
    """Orders statuses by how far training got (completed stages, then saved step).

    Used to refuse replacing local progress with an older remote copy.
    """
    if not status:
        return ()
    key = []
    for stage in STAGE_NAMES:
        done = _stage_status(status, stage) == COMPLETED
        record = _details(status, stage).get("resume_state") or {}
        step = _details(status, stage).get("step") if done else record.get("step")
        key.append((1 if done else 0, int(step or 0)))
    return tuple(key)


def is_remote_ahead(local: Optional[dict[str, Any]], remote: dict[str, Any]) -> bool:
    return progress_key(remote) > progress_key(local)


def without_unverified(status: dict[str, Any], failed: Iterable[NamedFile], reason: str) -> dict[str, Any]:
    """A copy of `status` that vouches for no file in `failed`.

    A completed stage with an output that did not verify becomes `failed` (so
    `--auto-resume` reruns it, saying why); an unfinished stage whose resumable
    state did not verify forgets that state (so it starts over).
    """
    out = copy.deepcopy(status)
    for f in failed:
        entry = out["stages"].get(f.stage)
        details = out.setdefault("details", {}).setdefault(f.stage, {})
        if entry is None:
            continue
        message = f"{f.name} {reason}"
        if entry.get("status") == COMPLETED:
            entry.update(status="failed", completed_at=None, checkpoint=None, error_message=message)
            details.pop("outputs", None)
            details.pop("resume_state", None)
            details.pop("step", None)
        elif details.get("resume_state") and state_relpath(details["resume_state"]) == f.name:
            details.pop("resume_state", None)
            details["step"] = 0
            entry["error_message"] = message
    return out


PREVIOUS_STATE = "previous_resume_state"  # additive key, remote copies only


def resume_states(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each unfinished stage's recorded resumable state (with a digest)."""
    out = {}
    for stage in _stages(status):
        record = _details(status, stage).get("resume_state")
        if _stage_status(status, stage) != COMPLETED and record and _has_digest(record) and record.get("file"):
            out[stage] = record
    return out


def with_previous_states(status: dict[str, Any], previous: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A copy of `status` that also names, per stage, the state the previous snapshot named.

    The remote keeps that file one publish longer (its status named it), so a newest
    state that arrives corrupt costs one save interval on a fresh machine, not the stage.
    """
    out = copy.deepcopy(status)
    for stage, record in resume_states(status).items():
        before = previous.get(stage)
        if before and state_relpath(before) != state_relpath(record):
            out.setdefault("details", {}).setdefault(stage, {})[PREVIOUS_STATE] = dict(before)
    return out


def previous_state_file(status: dict[str, Any], stage: str) -> Optional[NamedFile]:
    record = _details(status, stage).get(PREVIOUS_STATE)
    if not (record and _has_digest(record) and record.get("file")):
        return None
    return NamedFile(state_relpath(record), record["sha256"], int(record["size"]), stage)


def fall_back_to_previous_state(status: dict[str, Any], stage: str) -> dict[str, Any]:
    """A copy of `status` whose `stage` resumes from its previous state instead of the newest."""
    out = copy.deepcopy(status)
    details = out["details"][stage]
    record = details.pop(PREVIOUS_STATE)
    details["resume_state"] = record
    if record.get("step") is not None:
        details["step"] = int(record["step"])
    return out


def encode_status(status: dict[str, Any]) -> bytes:
    """The same encoding `ups.resume.atomic.atomic_write_json` uses."""
    return (json.dumps(status, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")
