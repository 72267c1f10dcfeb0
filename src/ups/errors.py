"""Typed errors the command line turns into one clear line and an exit code.

Every error a user can cause or fix (a bad config, a missing file, a held lock)
is one of these. `error_line` is the one mapping every command uses: any exception
reaching a command's top level becomes one `error:` line and an exit code (2 bad
input, 3 lock held, 1 the run itself failed; signals are 128 + signal: 130, 143),
a filesystem error gets its own advice, and the traceback is shown only with
`--debug` or UPS_DEBUG=1.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Optional

EXIT_USAGE = 2
EXIT_LOCKED = 3


class UpsError(Exception):
    """Base class: a problem the user can act on. `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(UpsError):
    """The command line itself is wrong (an unknown flag, a missing argument)."""

    exit_code = EXIT_USAGE


class ConfigError(UpsError):
    """The config file or an override is invalid (names the key and the fix)."""

    exit_code = EXIT_USAGE


class DataError(UpsError):
    """A data file is missing, unreadable or of the wrong layout (names the path)."""

    exit_code = EXIT_USAGE


class MissingUpstreamError(UpsError):
    """A stage needs an upstream stage's output that is missing or does not verify."""

    exit_code = EXIT_USAGE


class CheckpointError(UpsError):
    """A checkpoint file cannot be read, is unsafe, or does not match the config."""

    exit_code = EXIT_USAGE


class StatusFileError(UpsError):
    """`stage_status.json` or `metadata.json` is corrupt or of an unknown schema."""

    exit_code = EXIT_USAGE


class LockHeldError(UpsError):
    """Another live trainer holds the checkpoint directory."""

    exit_code = EXIT_LOCKED


class RemoteError(UpsError):
    """A remote checkpoint store (W&B, fsspec URI) failed or holds no usable run."""

    exit_code = EXIT_USAGE


class RemoteUnavailableError(RemoteError):
    """A remote store (W&B, an fsspec URI) could not be asked: auth, permission, rate limit,
    server error, timeout, DNS. Never read as "nothing there": the message names the answer."""

    exit_code = EXIT_USAGE


class LaunchError(UpsError):
    """A Vast.ai launch, watch or self-stop request is invalid or was refused.

    The message names the flag, value or API call and the fix; it never holds a secret.
    """

    exit_code = EXIT_USAGE


class DistributedError(UpsError):
    """A torchrun group could not form, or this rank stopped because another one failed or vanished.

    `exit_code` is the failing rank's own code when it was sent (rank 0's error, broadcast).
    """

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


# --- the one error -> exit mapping of every command ---------------------------------

EXIT_FAILED = 1  # the run itself failed (diverged, out of memory, disk full, a bug)
DEBUG_ENV = "UPS_DEBUG"  # UPS_DEBUG=1 (or --debug) adds the traceback to the one error line

# What to do about each filesystem error a user can meet: (exit code, advice).
_FS_ADVICE: dict[int, tuple[int, str]] = {
    errno.ENOSPC: (EXIT_FAILED, "the disk is full: free space or move training.checkpoint_dir to a larger disk, "
                                "then rerun with --auto-resume (files already written are intact)"),
    errno.EDQUOT: (EXIT_FAILED, "the disk quota is exhausted: free space or move the directory, then rerun"),
    errno.EROFS: (EXIT_USAGE, "the filesystem is read-only: point the path (e.g. training.checkpoint_dir, "
                              "--output-prefix) at a writable directory"),
    errno.EACCES: (EXIT_USAGE, "permission denied: fix the permissions (or the immutable flag) of that path, "
                               "or choose a directory you can write"),
    errno.EPERM: (EXIT_USAGE, "operation not permitted: fix the permissions (or the immutable flag) of that "
                              "path, or choose another directory"),
    errno.ENAMETOOLONG: (EXIT_USAGE, "the path is too long for the filesystem: use a shorter directory name"),
    errno.EISDIR: (EXIT_USAGE, "a directory is where a file belongs: remove or rename that directory"),
    errno.ENOTDIR: (EXIT_USAGE, "a file is where a directory belongs: the path (e.g. training.checkpoint_dir) "
                                "must name a directory; remove or rename that file"),
    errno.ENOENT: (EXIT_USAGE, "no such file or directory: check the path"),
    errno.EEXIST: (EXIT_USAGE, "something else already exists there: where a directory is needed (e.g. "
                               "training.checkpoint_dir), remove or rename that file, or choose another path"),
    errno.ELOOP: (EXIT_USAGE, "too many symbolic links (or a link where none is allowed): use a plain path"),
}


# Optional packages and the pyproject extra that installs each.
_EXTRAS = {"vastai": "launch", "s3fs": "s3", "gcsfs": "gcs"}


def os_error_line(e: OSError) -> tuple[str, int]:
    """`(message, exit code)` for a filesystem error: the path, what happened, what to do."""
    exit_code, advice = _FS_ADVICE.get(e.errno, (EXIT_FAILED, "check the path and the disk, then rerun"))
    where = " → ".join(str(f) for f in (e.filename, e.filename2) if f is not None) or "a file"
    return f"{where}: {e.strerror or type(e).__name__}; {advice}", exit_code


def error_line(e: BaseException) -> tuple[str, int]:
    """The one line (without `error: `) and exit code for any exception reaching a command's top."""
    if isinstance(e, UpsError):
        cause = _os_cause(e)
        text = one_line(e, whole=True, limit=400)
        if cause is not None and cause.errno in _FS_ADVICE:
            fs_code, advice = _FS_ADVICE[cause.errno]
            text = f"{text} ({advice})"
            if fs_code == EXIT_FAILED:  # a full disk fails the run, whatever was being written
                return text, EXIT_FAILED
        return text, e.exit_code
    if isinstance(e, OSError) and e.errno is not None:
        return os_error_line(e)
    if isinstance(e, ModuleNotFoundError) and e.name:
        top = e.name.split(".")[0]
        extra = _EXTRAS.get(top)
        how = f"pip install -e '.[{extra}]' (from the checkout; or pip install 'ups[{extra}]')" if extra \
            else f"pip install {top}"
        return f"the Python package '{top}' is not installed; install it with: {how}", EXIT_USAGE
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(e):
        return ("out of memory: the model or batch does not fit; lower training.batch_size or the model size "
                f"(hidden_dim, depth) and rerun ({one_line(e, whole=True, limit=400)})"), EXIT_FAILED
    return (f"unexpected {type(e).__name__}: {one_line(e, whole=True, limit=400)}; rerun with --debug (or {DEBUG_ENV}=1) for the "
            "traceback and report it if the message does not say what to fix"), EXIT_FAILED


def _os_cause(e: BaseException) -> "OSError | None":
    seen = e.__cause__ or e.__context__
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


# --- the one way an error becomes text in a message or a log line ---------------------

# Credentials that may reach this process through its environment: never echoed.
SECRET_ENV = ("WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS_JSON",
              "AZURE_STORAGE_KEY", "VAST_API_KEY")


def redact(text: str) -> str:
    """`text` with every secret from the environment (and URL passwords) masked."""
    for var in SECRET_ENV:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return re.sub(r"(://[^/:@\s]+):[^/@\s]+@", r"\1:***@", text)


def one_line(e: "BaseException | str", *, whole: bool = False, typed: bool = False,
             limit: Optional[int] = None) -> str:
    """An error's message as one line, secrets masked: what every message quoting an error uses.

    The first non-blank line, or with `whole` every line joined (for messages whose point
    comes later, as wandb-core's "giving up ..." / "while retrying: HTTP 500"); an empty
    message is the error's type name (an empty string stays empty). `typed` prefixes the
    type name of an error that is not one of ours (`OSError: ...`); a `UpsError` is already
    written for the reader. `limit` cuts a long line with "…" (after masking: a cut never
    leaves half a secret showing).
    """
    raw = e if isinstance(e, str) else str(e)
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    text = (" ".join(" ".join(lines).split()) if whole else lines[0]) if lines else ""
    if not isinstance(e, str):
        text = text or type(e).__name__
        if typed and not isinstance(e, UpsError):
            text = f"{type(e).__name__}: {text}"
    text = redact(text)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"
