"""A remote copy of the checkpoint directory as W&B artifact versions, through the official SDK.

One artifact per run (`ups-checkpoints-<run id>`, type `ups-checkpoint`); each
publish logs a new version holding one whole snapshot, aliased `latest` and a
progress tag (`operator-step-200`, `diff_residual-completed`). W&B commits a
version as a whole and stores a file only once across versions, so a version
never names a file it lacks and unchanged outputs cost nothing to re-log.

Uploads go through the live run (`run.log_artifact`; in offline mode they are
written locally for a later `wandb sync`). Downloads go through `wandb.Api`,
pinned to one version, so the status and the files it names come from the same
snapshot. The API key is read by the SDK from the environment; no message here
ever contains it (`redact`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from ups.errors import RemoteError, one_line
from ups.resume.atomic import TEMP_PREFIX, fsync_dir
from ups.resume.layout import STATE_DIR, STATUS_FILE
from ups.remote.snapshot import Snapshot
from ups.remote.store import (
    PublishReport, RemoteReader, RemoteStore, SnapshotChanged, check_file,
)
from ups.remote.wandb_lookup import lookup_artifact, lookup_run, unavailable
from ups.remote.wandb_run import validate_run_id

ARTIFACT_TYPE = "ups-checkpoint"
WAIT_SECONDS = 600  # an online upload must be acknowledged within this bound


def api_timeout() -> float:
    """Seconds one API call may take. wandb-core retries a 429 or 5xx inside that bound
    (then reports "did not respond in time"); `WANDB_HTTP_TIMEOUT` is the SDK's own
    setting for it (wandb/env.py `HTTP_TIMEOUT`)."""
    try:
        return float(os.environ.get("WANDB_HTTP_TIMEOUT") or 60)
    except ValueError:
        return 60.0


def artifact_name(run_id: str) -> str:
    return f"ups-checkpoints-{validate_run_id(run_id, 'W&B run id')}"


def is_offline(run: Any) -> bool:
    with contextlib.suppress(Exception):
        return bool(run.offline)
    return getattr(getattr(run, "settings", None), "mode", "") in ("offline", "dryrun")


class WandbStore(RemoteStore):
    def __init__(self, run_id: str, *, entity: Optional[str] = None, project: Optional[str] = None, run: Any = None):
        self.run_id = validate_run_id(run_id, "W&B run id")
        self.entity, self.project, self.run = entity, project, run
        self.artifact = artifact_name(run_id)
        self.run_path = "/".join(p for p in (entity, project, self.run_id) if p)
        self.description = "W&B artifact " + "/".join(p for p in (entity, project, self.artifact) if p)
        self._last: Optional[tuple[bytes, dict[str, bytes]]] = None
        self._completed_sent: Optional[frozenset[str]] = None

    @classmethod
    def for_run(cls, run: Any) -> "WandbStore":
        return cls(run.id, entity=run.entity, project=run.project, run=run)

    # --- publishing ---------------------------------------------------------

    def should_publish(self, snap: Snapshot, final: bool) -> bool:
        """Offline, each logged version keeps a full staged copy of its files until `wandb sync`
        (the SDK copies them into WANDB_DATA_DIR): so only stage completions and the session's
        last state are logged, not every periodic state. Online, everything is."""
        if final or self.run is None or not is_offline(self.run):
            return True
        return _completed_stages(snap) != self._completed_sent

    def pending_note(self) -> Optional[str]:
        if self.run is None or not is_offline(self.run):
            return None
        from ups.remote.wandb_run import sync_dir

        return f"kept locally until `wandb sync {sync_dir(self.run)}`"

    def publish(self, snap: Snapshot, local_dir: Path) -> PublishReport:
        if self.run is None:
            raise RemoteError(f"{self.description}: no live W&B run to log the artifact from")
        if self._last == (snap.status_bytes, snap.extras):
            return PublishReport(skipped=True)
        import wandb

        started = time.perf_counter()
        art = wandb.Artifact(self.artifact, type=ARTIFACT_TYPE, metadata={"tag": snap.tag})
        staged: list[str] = []
        try:
            self._add_verified(art, snap, Path(local_dir), staged)
            self._add_bytes(art, snap)
            self.run.log_artifact(art, aliases=["latest", snap.tag])
        except SnapshotChanged:
            _remove(staged)
            raise
        except Exception as e:
            _remove(staged)
            raise RemoteError(f"logging {self.description} failed: {one_line(e, typed=True)}") from e
        if not is_offline(self.run):
            try:
                art.wait(timeout=WAIT_SECONDS)
            except Exception as e:
                raise RemoteError(f"uploading {self.description} failed: {one_line(e, typed=True)}") from e
        self._last = (snap.status_bytes, dict(snap.extras))
        self._completed_sent = _completed_stages(snap)
        return PublishReport(uploaded=len(snap.files), bytes=sum(f.size for f in snap.files),
                             seconds=time.perf_counter() - started)

    def _add_verified(self, art: Any, snap: Snapshot, local_dir: Path, staged: list[str]) -> None:
        """Add each named file; the SDK's private copy is what gets uploaded, so check that."""
        for f in snap.files:
            try:
                entry = art.add_file(str(local_dir / f.name), name=f.name, policy="mutable")
            except (ValueError, FileNotFoundError):
                raise SnapshotChanged(f"{f.name} was removed before it could be uploaded") from None
            copy = Path(entry.local_path)
            staged.append(str(copy))
            problem = check_file(copy, f)
            if problem:
                raise SnapshotChanged(f"{f.name} {problem} (it changed while being copied)")

    def _add_bytes(self, art: Any, snap: Snapshot) -> None:
        for name, data in [*snap.extras.items(), (STATUS_FILE, snap.status_bytes)]:
            fd, tmp = tempfile.mkstemp(prefix="ups-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                art.add_file(tmp, name=name, policy="mutable")
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    # --- reading ------------------------------------------------------------

    def api(self) -> Any:
        import wandb

        overrides = {k: v for k, v in (("entity", self.entity), ("project", self.project)) if v}
        try:
            return wandb.Api(overrides=overrides, timeout=api_timeout())
        except Exception as e:  # a refused key (AuthenticationError), an unreachable host
            raise unavailable("anything (the API refused to start)", e) from e

    def check_run(self, api: Any) -> None:
        """NoRemoteCheckpoint when W&B says the run does not exist; RemoteUnavailableError
        when it could not be asked (`ups.remote.wandb_lookup`)."""
        lookup_run(api, self.run_path)

    def open_reader(self, api: Any = None) -> RemoteReader:
        api = api or self.api()
        name = "/".join(p for p in (self.entity, self.project, self.artifact) if p) + ":latest"
        # Not `api.artifact_exists`: it answers False for a 403, 429 or 5xx (see wandb_lookup).
        art = lookup_artifact(api, name, ARTIFACT_TYPE, self.run_path)
        return _WandbReader(art, self.description)


class _WandbReader(RemoteReader):
    """Reads one pinned artifact version; each file goes to a private temp dir first."""

    def __init__(self, art: Any, description: str):
        self.art, self.description = art, description

    def read_bytes(self, name: str) -> Optional[bytes]:
        with tempfile.TemporaryDirectory(prefix="ups-wandb-") as tmp:
            path = self._download(name, Path(tmp))
            return None if path is None else path.read_bytes()

    def fetch(self, name: str, dest: Path) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX + "wandb-", dir=dest.parent))
        try:
            path = self._download(name, tmp)
            if path is None:
                raise RemoteError(f"{self.description} does not hold {name}")
            os.replace(path, dest)
            fsync_dir(dest.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _download(self, name: str, root: Path) -> Optional[Path]:
        try:
            entry = self.art.get_entry(name)
        except KeyError:
            return None
        try:
            return Path(entry.download(root=str(root), skip_cache=True))
        except Exception as e:
            raise RemoteError(f"cannot download {name} from {self.description}: {one_line(e, typed=True)}") from e


def _completed_stages(snap: Snapshot) -> frozenset[str]:
    """Stages whose outputs (not a resumable state under state/) the snapshot holds."""
    return frozenset(f.stage for f in snap.files if not f.name.startswith(f"{STATE_DIR}/"))


def _remove(paths: list[str]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            os.chmod(p, 0o600)
            os.unlink(p)
