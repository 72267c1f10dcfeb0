"""Rebuild `stage_status.json` from the files that are really there.

The status file is the one record that says which stages are done. If it is
lost or corrupt (a disk error, a bad manual edit, a copy without it) the
outputs themselves can vouch for their stages: each embeds its stage, the
fingerprint it was trained for, the stage config and its step, and a resumable
state embeds its stage, fingerprint, step and epoch. So:

- a stage whose every output loads (`weights_only=True`) and agrees on one
  fingerprint is `completed`, with fresh digests — exactly what the trainer
  records, so `--auto-resume` verifies and skips it (a changed config or
  upstream still reruns it: the fingerprint decides, as always);
- otherwise its newest loadable resumable state makes it `in_progress` from that
  step;
- anything else is `not_started`.

The previous file is kept beside it (`stage_status.json.corrupt-<time>`, or
`.previous-<time>` when it was readable). The run's goodput record
(`details.goodput`) cannot be rebuilt from files: it is carried over from the
previous file whenever that still parses as JSON and holds a valid record, and
otherwise the report says it is lost and the next attempt starts a new one. The
trainer lock is held meanwhile, so a rebuild never races a live trainer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from ups.errors import CheckpointError, StatusFileError
from ups.resume import goodput as gp
from ups.resume.atomic import file_digest, fsync_dir
from ups.resume.files import STATE_FORMAT, load_output, load_torch
from ups.resume.layout import STAGE_CHECKPOINT, STAGE_NAMES, STAGE_OUTPUTS, STATE_DIR, STATUS_FILE, state_file_name
from ups.resume.lock import CheckpointDirLock
from ups.resume.saver import list_state_steps
from ups.resume.tracker import StageStatus, StageTracker, read_status_file


@dataclass
class StageRebuild:
    status: str
    reason: str
    entry: StageStatus = field(repr=False, default_factory=StageStatus)


@dataclass
class RebuildReport:
    checkpoint_dir: Path
    backup: Optional[Path]
    stages: dict[str, StageRebuild]
    goodput_attempts: Optional[int] = None  # attempts carried over; None: no record was kept

    def lines(self) -> list[str]:
        out = [f"Rebuilt {self.checkpoint_dir / STATUS_FILE} from the files present:"]
        out += [f"  {name:<20} {r.status:<12} {r.reason}" for name, r in self.stages.items()]
        if self.goodput_attempts is not None:
            out.append(f"Goodput record carried over from the previous file ({self.goodput_attempts} attempt(s))")
        elif self.backup:
            out.append("Goodput record: none readable in the previous file; the next attempt starts a new one")
        if self.backup:
            out.append(f"The previous file is kept as {self.backup}")
        return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rebuild_status(checkpoint_dir: str | Path) -> RebuildReport:
    """Write a fresh status file from the verified files in `checkpoint_dir`."""
    ckpt = Path(checkpoint_dir)
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {ckpt}")
    with CheckpointDirLock(ckpt):
        stages = {name: rebuild_stage(ckpt, name) for name in STAGE_NAMES}
        goodput = _previous_goodput(ckpt / STATUS_FILE)
        backup = _set_aside(ckpt / STATUS_FILE)
        tracker = StageTracker(ckpt, verbose=False)
        for name, r in stages.items():
            tracker.set_stage(name, r.entry)
        if goodput is not None:
            tracker.set_detail(gp.GOODPUT_KEY, goodput)
    return RebuildReport(ckpt, backup, stages, len(goodput["attempts"]) if goodput else None)


def _previous_goodput(path: Path) -> Optional[dict[str, Any]]:
    """The goodput record of the file being replaced, if it still parses (None otherwise)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    raw = (data.get("details") or {}).get(gp.GOODPUT_KEY) if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        return None
    record = gp.valid_record(raw)
    return record if record["attempts"] else None


def _set_aside(path: Path) -> Optional[Path]:
    if not path.exists():
        return None
    try:
        read_status_file(path)
        kind = "previous"
    except StatusFileError:
        kind = "corrupt"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.name}.{kind}-{stamp}")
    os.replace(path, backup)
    fsync_dir(path.parent)
    return backup


def rebuild_stage(ckpt: Path, stage: str) -> StageRebuild:
    completed, why_not = _from_outputs(ckpt, stage)
    if completed is not None:
        return completed
    resumable = _from_states(ckpt, stage)
    if resumable is not None:
        return resumable
    return StageRebuild("not_started", why_not or "no outputs and no resumable state")


def _from_outputs(ckpt: Path, stage: str) -> tuple[Optional[StageRebuild], str]:
    """(completed entry, '') when every output loads and agrees; else (None, why)."""
    present = [n for n in STAGE_OUTPUTS[stage] if (ckpt / n).is_file()]
    if not present:
        return None, ""
    missing = [n for n in STAGE_OUTPUTS[stage] if n not in present]
    if missing:
        return None, f"{', '.join(missing)} missing"
    objs, outputs = {}, {}
    for name in present:
        path = ckpt / name
        try:
            objs[name] = load_output(path, stage)
        except CheckpointError as e:
            return None, str(e)
        outputs[name] = file_digest(path)
    fps = {o.get("fingerprint") for o in objs.values()}
    if len(fps) != 1 or None in fps:
        return None, f"its outputs disagree on the fingerprint ({', '.join(sorted(map(str, fps)))}): mixed runs"
    first = objs[STAGE_CHECKPOINT[stage]]
    config = first.get("config") or {}
    epochs = config.get(f"stages.{stage}.epochs")
    done_at = _iso(max((ckpt / n).stat().st_mtime for n in objs))
    entry = StageStatus(
        status="completed", checkpoint=STAGE_CHECKPOINT[stage], completed_at=done_at, epoch=epochs,
        total_epochs=epochs, step=first.get("step"), total_steps=first.get("step"),
        fingerprint=first["fingerprint"], config=config or None, outputs=outputs,
    )
    verb = "load and agree" if len(objs) > 1 else "loads"
    return StageRebuild("completed", f"{', '.join(objs)} {verb} (step {first.get('step')})", entry), ""


def _from_states(ckpt: Path, stage: str) -> Optional[StageRebuild]:
    state_dir = ckpt / STATE_DIR / stage
    for step in reversed(list_state_steps(state_dir)):
        path = state_dir / state_file_name(step)
        try:
            state: Any = load_torch(path)
        except CheckpointError:
            continue
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("stage") != stage:
            continue
        digest = file_digest(path)
        record = {"file": f"{stage}/{path.name}", "step": state["step"], "epoch": state["epoch"], **digest,
                  "saved_at": _iso(path.stat().st_mtime)}
        entry = StageStatus(status="in_progress", epoch=state["epoch"], step=state["step"],
                            total_steps=state.get("total_steps"), fingerprint=state.get("fingerprint"),
                            resume_state=record)
        return StageRebuild("in_progress", f"resumable state at step {state['step']} ({record['file']})", entry)
    return None
