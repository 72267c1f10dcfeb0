"""`stage_status.json`: the explicit record of where the pipeline stands.

The file keeps the seed's schema v1 (`schema_version`, `created_at`,
`stages.<name>.{status, checkpoint, started_at, completed_at, epoch,
total_epochs, error_message}`) byte-for-byte compatible: a reader of the seed
schema that builds `StageStatus(**entry)` keeps working because every new fact
lives beside `stages`, under `details.<name>` (output digests, fingerprint, step
progress, the resumable state, `interrupted_at`). Every write is atomic.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Literal, Optional

from ups.errors import StatusFileError
from ups.resume.atomic import atomic_write_json
from ups.resume.layout import SCHEMA_VERSION, STAGE_NAMES, STATUS_FILE

StageStatusType = Literal["not_started", "in_progress", "completed", "failed"]
STATUSES = ("not_started", "in_progress", "completed", "failed")
REBUILD_HINT = "rebuild it from the verified files present with: ups status --rebuild {dir}"


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class StageStatus:
    """Status of one stage. The first seven fields are the seed's schema."""

    status: StageStatusType = "not_started"
    checkpoint: Optional[str] = None
    started_at: Optional[str] = None
    completed_at: Optional[str] = None
    epoch: Optional[int] = None
    total_epochs: Optional[int] = None
    error_message: Optional[str] = None
    # Additive facts, stored under `details.<stage>` in the file.
    step: Optional[int] = None
    total_steps: Optional[int] = None
    interrupted_at: Optional[str] = None
    updated_at: Optional[str] = None
    fingerprint: Optional[str] = None
    config: Optional[dict] = None
    outputs: Optional[dict] = None
    resume_state: Optional[dict] = None
    warning: Optional[str] = None  # the latest training warning (a diverging loss, a clamped batch)

    def to_dict(self) -> dict:
        return asdict(self)

    def seed_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in SEED_FIELDS}

    def detail_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in SEED_FIELDS and v is not None}

    @classmethod
    def from_dict(cls, data: dict) -> "StageStatus":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


SEED_FIELDS = ("status", "checkpoint", "started_at", "completed_at", "epoch", "total_epochs", "error_message")


class StageTracker:
    """Read and update `stage_status.json` in a checkpoint directory.

    Each call reads the file and each update rewrites it atomically, so the file
    is always the truth, also for another process reading it (the dashboard).
    Updates within one process are serialised (the background checkpoint writer
    records progress from its own thread).
    """

    STAGES = list(STAGE_NAMES)

    def __init__(self, checkpoint_dir: str | Path, verbose: bool = True):
        self.checkpoint_dir = Path(checkpoint_dir)
        self.status_file = self.checkpoint_dir / STATUS_FILE
        self.verbose = verbose
        self._lock = threading.RLock()
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if not self.status_file.exists():
            self._initialize_status_file()

    # --- file I/O -------------------------------------------------------

    def _initialize_status_file(self) -> None:
        data = {
            "schema_version": SCHEMA_VERSION,
            "created_at": utc_now(),
            "stages": {s: StageStatus().seed_dict() for s in self.STAGES},
            "details": {},
        }
        self._write_status(data)
        self._say(f"✓ Initialized stage status file: {self.status_file}")

    def _read_status(self) -> dict:
        if not self.status_file.exists():
            self._initialize_status_file()
        return read_status_file(self.status_file)

    def _write_status(self, data: dict) -> None:
        atomic_write_json(self.status_file, data)

    def _update(self, stage: str, change) -> StageStatus:
        """Read-modify-write one stage's entry under the in-process lock."""
        self._check(stage)
        with self._lock:
            data = self._read_status()
            current = _entry(data, stage)
            new = change(current)
            new.updated_at = utc_now()
            data["stages"][stage] = new.seed_dict()
            data.setdefault("details", {})[stage] = new.detail_dict()
            self._write_status(data)
            return new

    def _check(self, stage: str) -> None:
        if stage not in self.STAGES:
            raise ValueError(f"Unknown stage '{stage}'. Valid stages: {self.STAGES}")

    def _say(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    # --- the seed's API -------------------------------------------------

    def get_stage_status(self, stage: str) -> StageStatus:
        self._check(stage)
        return _entry(self._read_status(), stage)

    def mark_stage_started(
        self,
        stage: str,
        total_epochs: int,
        *,
        total_steps: Optional[int] = None,
        fingerprint: Optional[str] = None,
        config: Optional[dict] = None,
    ) -> None:
        """A fresh start: the stage's earlier progress and resumable state are forgotten."""
        self._update(
            stage,
            lambda _: StageStatus(
                status="in_progress",
                started_at=utc_now(),
                epoch=0,
                total_epochs=total_epochs,
                step=0,
                total_steps=total_steps,
                fingerprint=fingerprint,
                config=config,
            ),
        )
        self._say(f"✓ Marked stage '{stage}' as started ({total_epochs} epochs)")

    def mark_stage_completed(
        self,
        stage: str,
        checkpoint: str,
        *,
        outputs: Optional[dict] = None,
        fingerprint: Optional[str] = None,
        config: Optional[dict] = None,
    ) -> None:
        """Completed, with the digest of each output when the trainer provides them."""

        def complete(cur: StageStatus) -> StageStatus:
            return StageStatus(
                status="completed",
                checkpoint=checkpoint,
                started_at=cur.started_at,
                completed_at=utc_now(),
                epoch=cur.total_epochs if outputs is not None else None,
                total_epochs=cur.total_epochs,
                step=cur.total_steps if outputs is not None else None,
                total_steps=cur.total_steps,
                fingerprint=fingerprint or cur.fingerprint,
                config=config or cur.config,
                outputs=outputs,
                warning=cur.warning,
            )

        self._update(stage, complete)
        self._say(f"✓ Marked stage '{stage}' as completed (checkpoint: {checkpoint})")

    def mark_stage_failed(self, stage: str, error_message: str) -> None:
        """Failed; the last resumable state is kept so a rerun continues from it."""

        def fail(cur: StageStatus) -> StageStatus:
            cur.status = "failed"
            cur.error_message = error_message
            cur.completed_at = None
            cur.checkpoint = None
            cur.outputs = None
            return cur

        self._update(stage, fail)
        self._say(f"⚠️  Marked stage '{stage}' as failed: {error_message}")

    def get_all_statuses(self) -> Dict[str, StageStatus]:
        data = self._read_status()
        # A stage declared after the file was written reads as not started.
        names = [*self.STAGES, *(s for s in data["stages"] if s not in self.STAGES)]
        return {stage: _entry(data, stage) for stage in names}

    def get_next_stage_to_run(self, cfg: Any) -> Optional[str]:
        """First stage with epochs > 0 that is not completed (`cfg`: dict or Config)."""
        statuses = self.get_all_statuses()
        for stage in self.STAGES:
            if _stage_epochs(cfg, stage) <= 0:
                continue
            st = statuses.get(stage)
            if st is None or st.status != "completed":
                return stage
        return None

    def get_completed_stages(self) -> list[str]:
        statuses = self.get_all_statuses()
        return [s for s in self.STAGES if s in statuses and statuses[s].status == "completed"]

    def reset(self) -> None:
        """Reset all stages to not_started. Use with caution."""
        self._initialize_status_file()
        self._say("⚠️  Reset all stages to not_started")

    # --- additive API used by the trainer ---------------------------------

    def mark_stage_resumed(self, stage: str, *, total_epochs: int, total_steps: int) -> None:
        """Continue an interrupted or failed stage: keep its start time and saved state."""

        def resume(cur: StageStatus) -> StageStatus:
            cur.status = "in_progress"
            cur.error_message = None
            cur.interrupted_at = None
            cur.total_epochs = total_epochs
            cur.total_steps = total_steps
            return cur

        self._update(stage, resume)
        self._say(f"✓ Marked stage '{stage}' as resumed (from step {self.get_stage_status(stage).step})")

    def record_progress(self, stage: str, *, step: int, epoch: int, resume_state: Optional[dict] = None) -> None:
        """Record a committed resumable state (called after the state file is durable)."""

        def progress(cur: StageStatus) -> StageStatus:
            cur.step = step
            cur.epoch = epoch
            if resume_state is not None:
                cur.resume_state = resume_state
            return cur

        self._update(stage, progress)

    def mark_stage_interrupted(self, stage: str, *, step: int, epoch: int) -> None:
        """Stopped by a signal after saving: still `in_progress`, with `interrupted_at`."""

        def interrupt(cur: StageStatus) -> StageStatus:
            cur.status = "in_progress"
            cur.step = step
            cur.epoch = epoch
            cur.interrupted_at = utc_now()
            return cur

        self._update(stage, interrupt)
        self._say(f"⚠️  Marked stage '{stage}' as interrupted at step {step}")

    def get_detail(self, key: str) -> Any:
        """A pipeline-level fact stored under `details.<key>` (not a stage name), or None."""
        return (self._read_status().get("details") or {}).get(key)

    def set_detail(self, key: str, value: Any) -> None:
        """Store a pipeline-level fact under `details.<key>` (e.g. the goodput record)."""
        if key in self.STAGES:
            raise ValueError(f"details.{key} is a stage's entry; use the stage methods")
        with self._lock:
            data = self._read_status()
            data.setdefault("details", {})[key] = value
            self._write_status(data)

    def record_warning(self, stage: str, message: str) -> None:
        """Keep the latest training warning of the stage beside its progress."""

        def warn(cur: StageStatus) -> StageStatus:
            cur.warning = message
            return cur

        self._update(stage, warn)

    def set_stage(self, stage: str, status: StageStatus) -> None:
        """Write one entry as given (used when rebuilding the file from verified outputs)."""
        self._update(stage, lambda _: status)


def read_status_file(path: Path) -> dict:
    """Parse and check `stage_status.json` on this disk (`parse_status` of its bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StatusFileError(f"cannot read {path}: {e}; {REBUILD_HINT.format(dir=path.parent)}") from e
    return parse_status(data, str(path), str(path.parent))


def parse_status(raw: bytes, path: str, directory: str) -> dict:
    """The one parser of `stage_status.json`: its bytes from wherever they came (this disk, a
    remote copy), checked; a corrupt file is a StatusFileError naming `path` and the fix for
    the checkpoint `directory` it belongs to."""
    hint = REBUILD_HINT.format(dir=directory)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise StatusFileError(f"cannot read {path}: {e}; {hint}") from e
    except json.JSONDecodeError as e:
        raise StatusFileError(f"{path} is corrupt (not valid JSON: {e.msg} at line {e.lineno}); {hint}") from e
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        raise StatusFileError(f"{path} has no 'stages' mapping; {hint}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StatusFileError(
            f"{path} has schema_version {version!r}; this version of ups reads {SCHEMA_VERSION}. "
            f"Upgrade ups, or {hint}"
        )
    for stage, entry in data["stages"].items():
        status = entry.get("status") if isinstance(entry, dict) else None
        if status not in STATUSES:
            raise StatusFileError(f"{path}: stages.{stage}.status is {status!r}, not one of {STATUSES}; {hint}")
        problem = _detail_problem({k: v for k, v in entry.items() if k in ("epoch",)}) or _seed_problem(entry)
        if problem:
            raise StatusFileError(f"{path}: stages.{stage}{problem}; {hint}")
    for stage in STAGE_NAMES:
        data["stages"].setdefault(stage, StageStatus().seed_dict())
    if not isinstance(data.get("details", {}), dict):
        raise StatusFileError(f"{path}: 'details' must be a mapping; {hint}")
    for stage, entry in (data.get("details") or {}).items():
        problem = _detail_problem(entry)
        if problem:
            raise StatusFileError(f"{path}: details.{stage}{problem}; {hint}")
    return data


# The type each additive fact must have when present (a hand-edited or foreign file is checked
# here once, so no reader meets a string where it expects a mapping).
_DETAIL_TYPES: dict[str, tuple[type, ...]] = {
    "step": (int,), "total_steps": (int,), "epoch": (int,), "interrupted_at": (str,), "updated_at": (str,),
    "fingerprint": (str,), "config": (dict,), "outputs": (dict,), "resume_state": (dict,), "warning": (str,),
}


def _seed_problem(entry: dict) -> Optional[str]:
    for key in ("checkpoint", "started_at", "completed_at", "error_message"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            return f".{key} is {entry[key]!r}, not a string"
    total = entry.get("total_epochs")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
        return f".total_epochs is {total!r}, not an int"
    return None


def _detail_problem(entry: Any) -> Optional[str]:
    if not isinstance(entry, dict):
        return f" is a {type(entry).__name__}, not a mapping"
    for key, types in _DETAIL_TYPES.items():
        value = entry.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            return f".{key} is {value!r}, not a {types[0].__name__}"
    for name, rec in (entry.get("outputs") or {}).items():
        if not isinstance(rec, dict):
            return f".outputs.{name} is not a mapping"
    return None


def _entry(data: dict, stage: str) -> StageStatus:
    merged = dict(data["stages"].get(stage) or {})
    merged.update((data.get("details") or {}).get(stage) or {})
    return StageStatus.from_dict(merged)


def _stage_epochs(cfg: Any, stage: str) -> int:
    if hasattr(cfg, "stage"):
        return cfg.stage(stage).epochs
    return int(((cfg or {}).get("stages") or {}).get(stage, {}).get("epochs", 0) or 0)
