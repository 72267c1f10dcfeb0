"""The one interface every remote checkpoint store implements, and how a store is chosen.

Two backends: `FsspecStore` (any fsspec URI: file://, s3://, gs://, ...) and
`WandbStore` (one W&B artifact per run). Training only ever publishes whole
snapshots (`ups.remote.snapshot`) and a fresh machine only ever reads one
consistent copy back, so the interface is those two operations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ups.errors import RemoteError
from ups.remote.snapshot import NamedFile, Snapshot
from ups.resume.atomic import file_digest



class SnapshotChanged(RemoteError):
    """A file changed on disk while it was being uploaded; take a fresh snapshot and retry."""


class NoRemoteCheckpoint(RemoteError):
    """The remote holds no checkpoint (no run, no artifact, no status file)."""


@dataclass
class PublishReport:
    uploaded: int = 0  # data files sent (unchanged ones are skipped)
    bytes: int = 0
    seconds: float = 0.0
    skipped: bool = False  # nothing changed since the last publish


class RemoteReader(ABC):
    """One consistent view of a remote copy (a W&B store pins one artifact version)."""

    @abstractmethod
    def read_bytes(self, name: str) -> Optional[bytes]:
        """A small file's bytes, or None when the remote does not hold it."""

    @abstractmethod
    def fetch(self, name: str, dest: Path) -> None:
        """Write the remote file `name` to the local path `dest` (not verified here)."""


class RemoteStore(ABC):
    """Where copies of a checkpoint directory go. `description` is printable (no secrets)."""

    description: str

    @abstractmethod
    def publish(self, snap: Snapshot, local_dir: Path) -> PublishReport:
        """Upload the snapshot's files (each verified against its digest), the status last."""

    @abstractmethod
    def open_reader(self) -> RemoteReader:
        """The latest copy; raises NoRemoteCheckpoint when there is none."""

    def should_publish(self, snap: Snapshot, final: bool) -> bool:
        """Whether this snapshot is worth sending (`final`: the last one of the session)."""
        return True

    def pending_note(self) -> Optional[str]:
        """Where the copy really is when it has not left the machine yet (offline W&B), else None."""
        return None

    def probe(self) -> None:
        """Before training: raise RemoteUnavailableError when no copy can be kept here."""

    def close(self) -> None:
        """Release clients; the default holds none."""


def check_file(path: Path, expected: NamedFile) -> Optional[str]:
    """Why `path` is not the file `expected` describes, or None when it is."""
    if not path.is_file():
        return "is missing"
    digest = file_digest(path)
    sha, size = digest["sha256"], digest["size"]
    if size != expected.size:
        return f"is truncated or padded ({size} of {expected.size} bytes)"
    if sha != expected.sha256:
        return "does not match its recorded sha256"
    return None


def open_store(uri: str) -> RemoteStore:
    """A store for an fsspec URI (W&B stores are made from a run: `WandbStore.for_run`)."""
    from ups.remote.fsspec_store import FsspecStore

    return FsspecStore(uri)
