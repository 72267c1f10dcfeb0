"""Crash-consistent file writes: the one place that knows how to commit a file.

A reader of any file in a checkpoint directory must see either the old bytes or
the new bytes, never a torn mix, even after `kill -9` or power loss. Every
writer in the project goes through `atomic_path`: write a temp file in the same
directory, flush and fsync it, `os.replace` it over the target, fsync the
directory so the rename itself is durable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator

from ups.resume.faults import crash_point

TEMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20
# mkstemp creates 0600 files; committed files get the usual 0666 & ~umask.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (e.g. certain network mounts) refuse fsync on dirs
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path` atomically and durably.

    The caller writes (and may close) the temp file; this fsyncs it before the
    rename. On an exception the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        crash_point(f"before-rename:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


class Digest:
    """The one way the project hashes bytes: sha256 (plus any `algos` asked for) and the size.

    Fed chunk by chunk, so a copy can hash what passes through it (a download) without
    reading the bytes twice. `record()` is `{"sha256": hex, "size": bytes}` (plus one hex
    entry per extra algorithm): the shape the status file records for every file.
    """

    def __init__(self, algos: Iterable[str] = ()):
        self._hashes = {a: hashlib.new(a) for a in dict.fromkeys(("sha256", *algos))}
        self.size = 0

    def update(self, chunk: bytes) -> None:
        for h in self._hashes.values():
            h.update(chunk)  # releases the GIL: a hashing thread runs beside the writer
        self.size += len(chunk)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sha256": self._hashes["sha256"].hexdigest(), "size": self.size}
        out.update((a, h.hexdigest()) for a, h in self._hashes.items() if a != "sha256")
        return out


def file_digest(path: str | Path, algos: Iterable[str] = ()) -> dict[str, Any]:
    """`{"sha256": hex, "size": bytes}` of a file, read in chunks."""
    with open(path, "rb") as f:
        return stream_digest(f, algos)


def stream_digest(f: BinaryIO, algos: Iterable[str] = ()) -> dict[str, Any]:
    """`file_digest` of an open binary file (local or fsspec), from its current position."""
    digest = Digest(algos)
    while chunk := f.read(_CHUNK):
        digest.update(chunk)
    return digest.record()


def bytes_digest(data: bytes) -> dict[str, Any]:
    """`file_digest` of bytes already in memory."""
    digest = Digest()
    digest.update(data)
    return digest.record()


def digest_in_background(path: Path) -> Future:
    """Start hashing `path` in a thread (its descriptor is opened now, so a rename is harmless)."""
    f = open(path, "rb")
    future: Future = Future()

    def run() -> None:
        try:
            with f:
                future.set_result(stream_digest(f))
        except BaseException as e:  # surfaced by future.result()
            future.set_exception(e)

    threading.Thread(target=run, name="ups-digest", daemon=True).start()
    return future


def remove_stale_temps(directory: Path, names: Iterable[str], state_dirs: Iterable[Path] = ()) -> list[Path]:
    """Delete temp files a killed writer of this project left behind; they are never valid data.

    Only where the trainer writes (`directory` itself and the given state directories, not
    their subfolders: a nested run, or a user's folder, is none of its business) and only
    names `atomic_path` makes for the files it commits there: `.tmp-<name>.<8 random>` for
    one of `names` (or a state file `step-N.pt`). A user's own `.tmp-notes` is left alone.
    A live writer of another run never writes here: the directory is locked by this one.
    """
    removed = []
    targets = [(Path(directory), _temp_pattern(names))] + [(Path(d), _STATE_TEMP) for d in state_dirs]
    for folder, pattern in targets:
        if not folder.is_dir() or folder.is_symlink():
            continue
        for p in folder.iterdir():
            if pattern.fullmatch(p.name) and p.is_file() and not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed


# mkstemp's random part: 8 characters of [a-z0-9_] (CPython Lib/tempfile.py, _RandomNameSequence).
_RANDOM = r"[a-z0-9_]{8}"
_STATE_TEMP = re.compile(rf"{re.escape(TEMP_PREFIX)}step-\d+\.pt\.{_RANDOM}")


def _temp_pattern(names: Iterable[str]) -> re.Pattern:
    alternatives = "|".join(re.escape(n) for n in sorted(names))
    return re.compile(rf"{re.escape(TEMP_PREFIX)}(?:{alternatives})\.{_RANDOM}")
