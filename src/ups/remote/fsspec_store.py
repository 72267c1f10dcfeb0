"""A remote copy of the checkpoint directory at any fsspec URI (file://, s3://, gs://, ...).

The remote mirrors the local layout (`stage_status.json`, `operator.pt`,
`state/<stage>/step-N.pt`, ...), so `--resume-from URI` also works on a plain
copy of a checkpoint directory. Commit rules:

- each data file is hashed from an open descriptor *before* it is sent and must
  match the digest the status records (a file replaced meanwhile aborts the
  snapshot; writers only ever replace files, so an open descriptor is stable);
- a local-filesystem remote (a mounted disk, NFS) is written like the checkpoint
  directory itself: temp file, fsync, rename; object stores (S3, GCS) make an
  object visible only once its upload completes, and an aborted upload is
  discarded;
- `stage_status.json` goes last, then state files no longer named by this or the
  previous status are deleted (a reader that fetched the previous status still
  finds its files, or re-reads and retries).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import posixpath
import time
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from ups.errors import RemoteError, RemoteUnavailableError, StatusFileError, one_line
from ups.resume.atomic import TEMP_PREFIX, atomic_path, atomic_write_bytes, stream_digest
from ups.resume.layout import STATE_DIR, STATUS_FILE
from ups.resume.tracker import parse_status
from ups.remote import object_store
from ups.remote.snapshot import NamedFile, Snapshot, encode_status, named_files, resume_states, with_previous_states
from ups.remote.store import (
    NoRemoteCheckpoint, PublishReport, RemoteReader, RemoteStore, SnapshotChanged,
)

_CHUNK = 1 << 20
# Test hook, inert unless set: `UPS_TEST_UPLOAD_STALL=<glob>[#n]:<seconds>` pauses the
# n-th upload (default: first) of a data file matching <glob> halfway through, as a
# slow link would, so a test can kill the process while an upload is in flight.
STALL_ENV = "UPS_TEST_UPLOAD_STALL"
_stall_seen: dict[str, int] = {}


def stall_seconds(name: str, spec: Optional[str]) -> float:
    """How long to pause mid-upload of `name` under the hook `spec` (counts matches)."""
    if not spec:
        return 0.0
    pattern, _, seconds = spec.rpartition(":")
    glob, _, nth = pattern.partition("#")
    if not fnmatch.fnmatchcase(name, glob):
        return 0.0
    _stall_seen[spec] = _stall_seen.get(spec, 0) + 1
    return float(seconds) if _stall_seen[spec] == int(nth or 1) else 0.0


def parse_uri(uri: str):
    """(filesystem, root path) for a URI; errors say which extra to install."""
    from fsspec.core import url_to_fs

    if "://" in uri and "@" in uri.split("://", 1)[1].split("/", 1)[0]:
        raise RemoteError(f"remote URI {uri.split('://')[0]}://...: no credentials in the URI; "
                          "give them through the environment (e.g. AWS_ACCESS_KEY_ID) instead")
    try:
        return url_to_fs(uri)
    except ImportError as e:
        extra = {"s3": "s3", "gs": "gcs", "gcs": "gcs"}.get(uri.split("://", 1)[0], "")
        hint = f"pip install 'ups[{extra}]'" if extra else "install the fsspec backend for it"
        raise RemoteError(f"remote URI {uri}: {e} ({hint})") from e
    except ValueError as e:
        raise RemoteError(f"remote URI {uri}: {e}; use an fsspec URI such as file:///mnt/ckpt or s3://bucket/run1") from e


def _is_local(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


class FsspecStore(RemoteStore):
    def __init__(self, uri: str):
        self.uri = uri
        self.description = uri
        self.fs, self.root = parse_uri(uri)
        self.local = _is_local(self.fs)
        self._have: Optional[dict[str, str]] = None  # remote name -> sha256 known to be there
        self._last: Optional[tuple[bytes, dict[str, bytes]]] = None
        self._named_before: set[str] = set()
        self._states_before: dict[str, dict] = {}  # stage -> the state the last remote status named

    def _path(self, name: str) -> str:
        return posixpath.join(self.root, name)

    # --- publishing ---------------------------------------------------------

    def publish(self, snap: Snapshot, local_dir: Path) -> PublishReport:
        if self._last == (snap.status_bytes, snap.extras):
            return PublishReport(skipped=True)
        started, report = time.perf_counter(), PublishReport()
        have = self._known()
        try:
            for f in snap.files:
                if have.get(f.name) == f.sha256:
                    continue
                have.pop(f.name, None)
                self._put_file(Path(local_dir) / f.name, f)
                have[f.name] = f.sha256
                report.uploaded += 1
                report.bytes += f.size
            for name, data in snap.extras.items():
                self._put_bytes(name, data)
            report.uploaded += self._confirm(snap, Path(local_dir))
            status = json.loads(snap.status_bytes)  # the trainer's own, parsed by take_snapshot already
            remote_status = encode_status(with_previous_states(status, self._states_before))
            self._put_bytes(STATUS_FILE, remote_status)  # last: now it may name the files above
        except RemoteError:
            raise
        except Exception as e:
            raise RemoteError(f"upload to {self.description} failed: {one_line(e, typed=True)}") from e
        named = {f.name for f in snap.files}
        self._prune(keep=named | self._named_before)  # the previous status's state stays: it is named too
        self._named_before = named
        self._states_before = resume_states(status)
        self._last = (snap.status_bytes, dict(snap.extras))
        report.seconds = time.perf_counter() - started
        return report

    def _known(self) -> dict[str, str]:
        """Files already on the remote, learnt once from its status (checked by size).

        Only "no status there" means an empty remote; a remote that cannot be read is
        never published to (its status might name files this session would prune).
        """
        if self._have is None:
            have: dict[str, str] = {}
            if self.local:
                self._remove_stale_temps()
            try:
                raw = self.fs.cat_file(self._path(STATUS_FILE))
            except FileNotFoundError:
                raw = None
            except Exception as e:
                raise RemoteUnavailableError(f"cannot read {STATUS_FILE} at {self.description}: "
                                             f"{object_store.describe(e)}") from e
            try:
                status = parse_status(raw, self._path(STATUS_FILE), self.uri) if raw is not None else {}
            except StatusFileError:
                status = {}  # a corrupt status vouches for nothing; this publish replaces it
            for f in named_files(status) if status else []:
                if self._remote_size(f.name) == f.size:
                    have[f.name] = f.sha256
            self._have = have
            self._named_before = set(have)
            if status:
                self._states_before = resume_states(status)
        return self._have

    def _remote_size(self, name: str) -> Optional[int]:
        """The size of the remote object `name`; None when it is definitely not there."""
        try:
            return int(self.fs.info(self._path(name))["size"])
        except FileNotFoundError:
            return None

    def _confirm(self, snap: Snapshot, local_dir: Path) -> int:
        """Check that every named file is on the remote before the status names it.

        The status is the promise; an object lost since it was sent (or a cache of
        what was sent that is wrong) is uploaded again, once. Returns the re-uploads.
        """
        if not hasattr(self.fs, "invalidate_cache"):
            return 0
        self.fs.invalidate_cache()
        again = 0
        for f in snap.files:
            if self._remote_size(f.name) == f.size:
                continue
            (self._have or {}).pop(f.name, None)
            self._put_file(local_dir / f.name, f)
            again += 1
            if self._remote_size(f.name) != f.size:
                raise RemoteError(f"{f.name} is not on {self.description} after uploading it; "
                                  f"{STATUS_FILE} was not updated")
            (self._have or {})[f.name] = f.sha256
        return again

    def probe(self) -> None:
        """Before training: can a copy be kept here at all? (`object_store.probe`)."""
        object_store.probe(self.fs, self.root, self.uri, self.local)
        if not self.local:
            try:
                aborted = object_store.abort_incomplete_uploads(self.fs, self.root)
            except Exception:  # noqa: BLE001 - housekeeping; the lifecycle rule in the guide is the backstop
                aborted = 0
            if aborted:
                print(f"🧹 aborted {aborted} incomplete multipart upload(s) under {self.uri}", flush=True)

    def _put_file(self, src_path: Path, f: NamedFile) -> None:
        try:
            src = open(src_path, "rb")
        except FileNotFoundError:
            raise SnapshotChanged(f"{f.name} was removed before it could be uploaded") from None
        with src:
            digest = stream_digest(src)
            if (digest["sha256"], digest["size"]) != (f.sha256, f.size):
                raise SnapshotChanged(f"{f.name} changed before it could be uploaded")
            src.seek(0)
            with self._open_target(f.name) as out:
                _copy(src, out, f)

    @contextlib.contextmanager
    def _open_target(self, name: str) -> Iterator[BinaryIO]:
        if self.local:
            with atomic_path(self._path(name)) as tmp, open(tmp, "wb") as out:
                yield out
            return
        out = self.fs.open(self._path(name), "wb")
        try:
            yield out
        except BaseException:
            with contextlib.suppress(Exception):
                out.discard()  # abort the upload: never commit a partial object
            raise
        out.close()

    def _put_bytes(self, name: str, data: bytes) -> None:
        if self.local:
            atomic_write_bytes(self._path(name), data)
        else:
            self.fs.pipe_file(self._path(name), data)

    def _prune(self, keep: set[str]) -> None:
        """Delete remote state files that neither this nor the previous status names."""
        base = self._path(STATE_DIR)
        with contextlib.suppress(FileNotFoundError):
            for path in self.fs.find(base):
                name = posixpath.relpath(path, self.root)
                if name not in keep and not posixpath.basename(name).startswith(TEMP_PREFIX):
                    with contextlib.suppress(Exception):
                        self.fs.rm_file(path)
                        (self._have or {}).pop(name, None)

    def _remove_stale_temps(self) -> None:
        """Temp files an uploader killed mid-file left on a local-filesystem remote."""
        root = Path(self.root)
        if root.is_dir():
            for p in root.rglob(f"{TEMP_PREFIX}*"):
                with contextlib.suppress(OSError):
                    p.unlink()

    # --- reading ------------------------------------------------------------

    def open_reader(self) -> RemoteReader:
        # Not fs.exists(): it answers False for a 403 or missing credentials (object_store).
        try:
            self.fs.info(self._path(STATUS_FILE))
        except FileNotFoundError as e:
            where = "its bucket does not exist" if "bucket" in str(e).lower() else f"{STATUS_FILE} not found"
            raise NoRemoteCheckpoint(f"{self.description} holds no checkpoint ({where})") from e
        except Exception as e:
            raise RemoteUnavailableError(f"cannot read {self.description}: {object_store.describe(e)}; "
                                         "nothing was trained or published") from e
        return FsspecReader(self)


class FsspecReader(RemoteReader):
    """Reads a copy where it is: what `--resume-from` fetches and what `ups status` looks at.

    Beyond the reader every store has, it lists the files and hashes one where it lies,
    so the dashboard verifies a remote copy without downloading it first.
    """

    def __init__(self, store: FsspecStore):
        self.store = store

    def _unreachable(self, e: BaseException) -> RemoteUnavailableError:
        # botocore's NoCredentialsError / EndpointConnectionError are not OSErrors: catch them all
        return RemoteUnavailableError(f"cannot read {self.store.uri}: {object_store.describe(e)}")

    def is_dir(self) -> bool:
        try:
            return self.store.fs.isdir(self.store.root)
        except Exception as e:  # noqa: BLE001 - one line for every way a remote refuses
            raise self._unreachable(e) from e

    def files(self) -> dict[str, dict]:
        """Every file below the root: relative name -> {size, mtime (if known)}."""
        root = self.store.root.rstrip("/")
        try:
            found = self.store.fs.find(root or "/", detail=True)
        except FileNotFoundError:
            return {}
        except Exception as e:  # noqa: BLE001
            raise self._unreachable(e) from e
        return {(path[len(root):].lstrip("/") if path.startswith(root) else path):
                {"size": info.get("size"), "mtime": _mtime(info)}
                for path, info in sorted(found.items()) if info.get("type", "file") == "file"}

    def digest(self, name: str) -> dict:
        """`file_digest` of the remote file, read where it lies (FileNotFoundError when absent)."""
        try:
            with self.store.fs.open(self.store._path(name), "rb") as f:
                return stream_digest(f)
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._unreachable(e) from e

    def read_bytes(self, name: str) -> Optional[bytes]:
        try:
            return self.store.fs.cat_file(self.store._path(name))
        except FileNotFoundError:
            return None
        except Exception as e:
            raise RemoteError(f"cannot read {name} from {self.store.description}: {one_line(e, typed=True)}") from e

    def fetch(self, name: str, dest: Path) -> None:
        try:
            self.store.fs.get_file(self.store._path(name), str(dest))
        except FileNotFoundError:
            raise RemoteError(f"{self.store.description} does not hold {name}") from None
        except Exception as e:
            raise RemoteError(f"cannot download {name} from {self.store.description}: {one_line(e, typed=True)}") from e


def _copy(src: BinaryIO, out: BinaryIO, f: NamedFile) -> None:
    stall = stall_seconds(f.name, os.environ.get(STALL_ENV))
    sent = 0
    while chunk := src.read(min(_CHUNK, max(1, f.size // 2)) if stall else _CHUNK):
        out.write(chunk)
        sent += len(chunk)
        if stall and sent < f.size:
            out.flush()
            print(f"[test hook] upload paused mid-file: {f.name} ({sent}/{f.size} bytes)", flush=True)
            time.sleep(stall)
            stall = 0.0


def _mtime(info: dict) -> Optional[float]:
    value = info.get("mtime") or info.get("LastModified") or info.get("updated")
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else None
