"""Never publish over another run: check what a remote prefix holds before the first upload.

A remote copy is the run's own: publishing replaces its status, metadata and outputs.
Pointed by mistake at a prefix that holds a different run (another machine's, last
week's), the sync would silently replace that run's completed work. A run is known by
the `created_at` of its status file (copied verbatim by every upload and download, so
the local directory and its remote copy agree) and by its W&B run id when both have one.
A prefix that holds a different run is refused before anything is uploaded, unless the
user takes it over (`--take-over-remote`). A remote that *is* the checkpoint directory
(or lies inside it, or holds it) is refused always: uploading a directory onto itself
rewrites the files the trainer is reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from ups.errors import RemoteError
from ups.remote.store import NoRemoteCheckpoint, RemoteStore
from ups.resume.layout import METADATA_FILE, STATUS_FILE

TAKE_OVER_FLAG = "--take-over-remote"


def check_remote_target(store: RemoteStore, checkpoint_dir: Path, take_over: bool) -> None:
    """Raise RemoteError when publishing to `store` would replace another run (or the dir itself)."""
    _refuse_self(store, Path(checkpoint_dir))
    try:
        reader = store.open_reader()
    except NoRemoteCheckpoint:
        return  # an empty prefix: ours to fill
    remote_status = _json(reader.read_bytes(STATUS_FILE))
    remote_meta = _json(reader.read_bytes(METADATA_FILE))
    why = different_run(_local_json(checkpoint_dir / STATUS_FILE), _local_json(checkpoint_dir / METADATA_FILE),
                        remote_status, remote_meta)
    if why is None:
        return
    if take_over:
        print(f"⚠️  {store.description} held another run ({why}); replacing it ({TAKE_OVER_FLAG})", flush=True)
        return
    raise RemoteError(
        f"checkpoint remote {store.description} holds another run ({why}); nothing was uploaded. Continue that "
        f"run with --resume-from {store.description}, pick an empty prefix, or pass {TAKE_OVER_FLAG} to replace it"
    )


def different_run(local_status: Optional[dict[str, Any]], local_meta: Optional[dict[str, Any]],
                  remote_status: Optional[dict[str, Any]], remote_meta: Optional[dict[str, Any]]) -> Optional[str]:
    """Why the remote holds a run other than the local one, or None when it is the same (or empty)."""
    if not remote_status:
        return None
    remote_created = remote_status.get("created_at")
    if not local_status:
        return f"started {remote_created}; this checkpoint directory has no run yet"
    if remote_created != local_status.get("created_at"):
        return f"started {remote_created}, this one {local_status.get('created_at')}"
    local_id, remote_id = _wandb_id(local_meta), _wandb_id(remote_meta)
    if local_id and remote_id and local_id != remote_id:
        return f"W&B run {remote_id}, this one {local_id}"
    return None


def _refuse_self(store: RemoteStore, checkpoint_dir: Path) -> None:
    if not getattr(store, "local", False):
        return
    remote = Path(os.path.realpath(store.root))
    local = Path(os.path.realpath(checkpoint_dir))
    if remote == local or local in remote.parents or remote in local.parents:
        where = "is the checkpoint directory itself" if remote == local else "overlaps the checkpoint directory"
        raise RemoteError(f"checkpoint remote {store.description} {where} ({local}); a remote copy must live "
                          "elsewhere: give --checkpoint-remote another directory or bucket")


def _wandb_id(meta: Optional[dict[str, Any]]) -> Optional[str]:
    info = (meta or {}).get("training_wandb")
    return info.get("id") if isinstance(info, dict) else None


def _json(data: Optional[bytes]) -> Optional[dict[str, Any]]:
    try:
        obj = json.loads(data) if data else None
    except ValueError:
        return {"created_at": "<unreadable status>"}  # something is there, and it is not ours
    return obj if isinstance(obj, dict) else None


def _local_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return _json(path.read_bytes())
    except OSError:
        return None
