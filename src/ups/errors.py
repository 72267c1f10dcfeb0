"""Typed errors the command line turns into one clear line and an exit code.

Every error a user can cause or fix (a bad config, a missing file, a held lock)
is one of these; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_LOCKED = 3


class UpsError(Exception):
    """Base class: a problem the user can act on. `exit_code` is what the CLI returns."""

    exit_code = 1


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
