"""One trainer per checkpoint directory.

Two trainers writing the same `stage_status.json` and state files would corrupt
each other's progress. The lock is an `fcntl.flock` on `.train.lock`: the kernel
releases it when the holder dies (even by `kill -9`), so a stale lock is taken
over without any guesswork about PIDs. The file's text only says who holds it.

The lock file is truncated and rewritten by whoever takes it, so it is opened with
`O_NOFOLLOW` and must be a regular file with one link: a `.train.lock` planted as a
symlink or hard link to a file elsewhere would otherwise have that file truncated.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time
from pathlib import Path

from ups.errors import CheckpointError, LockHeldError

LOCK_FILE = ".train.lock"


class CheckpointDirLock:
    """Exclusive, non-blocking lock on a checkpoint directory. Use as a context manager."""

    def __init__(self, checkpoint_dir: str | Path):
        self.path = Path(checkpoint_dir) / LOCK_FILE
        self._fd: int | None = None
        self.previous_holder: dict | None = None

    def acquire(self) -> "CheckpointDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeldError(
                f"{self.path.parent} is in use by another trainer ({_describe(holder)}). "
                "Wait for it to finish or stop it; two trainers on one checkpoint_dir would "
                "overwrite each other's progress."
            ) from None
        self.previous_holder = _read_holder(fd) or None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def _open(self) -> int:
        fix = f"remove {self.path} (ups recreates it) and rerun"
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise CheckpointError(f"{self.path} is a symbolic link; the lock file must be a regular file "
                                      f"in the checkpoint directory: {fix}") from None
            if e.errno == errno.EISDIR:
                raise CheckpointError(f"{self.path} is a directory, not a lock file: {fix}") from None
            raise
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            what = "not a regular file" if not stat.S_ISREG(st.st_mode) else "a hard link to another file"
            raise CheckpointError(f"{self.path} is {what}; refusing to use it as the lock: {fix}")
        return fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def took_over_stale_lock(self) -> bool:
        """True when a previous holder's record was left behind (it died without releasing)."""
        return bool(self.previous_holder) and self.previous_holder.get("pid") != os.getpid()

    def __enter__(self) -> "CheckpointDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')}, since {since}"
