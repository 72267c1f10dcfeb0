"""Ask W&B whether a run or an artifact exists, and never mistake "could not ask" for "no".

`wandb.Api().artifact_exists()` answers `False` for a 401, 403, 429 or 5xx alike
(wandb 0.31, `wandb/apis/public/api.py`: it re-raises only what
`_is_service_api_transport_error` calls a transport failure, i.e. no HTTP status,
408 or 504). Read as "this run has no checkpoints", that makes a fresh machine
retrain from scratch and then publish over the run's `latest`. So ups never calls
it: it asks for the object itself and reads the SDK's answer.

What the SDK raises (wandb 0.31, checked against a loopback server):

- `Api.run(path)` and `Api.artifact(name)` are wrapped by `normalize_exceptions`
  (`wandb/apis/normalize.py`), which turns every failure into `CommError(message, exc)`.
- a definite "not found" is a 200 answer with a null object: `Run._load_with_fragment`
  raises `RunNotFoundError` (a ValueError, `wandb/apis/public/runs.py`);
  `Artifact._from_name` raises `ValueError("project ... not found under entity ...")` or
  `ValueError("artifact membership ... not found in ...")`
  (`wandb/sdk/artifacts/artifact.py`);
- an HTTP error comes as a `WandbApiFailedError` whose `response.http_status` is the
  status (0 once wandb-core gave up retrying a 5xx or 429,
  `wandb/sdk/lib/service/service_connection.py`).

Only the first shape counts as "not found". A wrong `type=` is its own error. A
private project W&B hides from this key also answers `project: null`; that is the
one ambiguity W&B's API leaves, and the message says so.
"""

from __future__ import annotations

from typing import Any, Optional

from ups.errors import RemoteUnavailableError

_NOT_FOUND_MARKERS = ("not found", "could not find")


def wrapped(e: BaseException) -> Optional[BaseException]:
    """The cause a `wandb.errors.CommError` carries (`.exc`), else the chained one."""
    return getattr(e, "exc", None) or e.__cause__


def http_status(e: BaseException) -> Optional[int]:
    """The HTTP status W&B answered with, when the SDK kept it (None: no answer, or unknown)."""
    for err in (e, wrapped(e)):
        response = getattr(err, "response", None)
        status = getattr(response, "http_status", None) or getattr(response, "status_code", None)
        if status:
            return int(status)
    return None


def is_not_found(e: BaseException) -> bool:
    """True only for the SDK's definite "no such object" (a ValueError saying so)."""
    cause = wrapped(e) if type(e).__name__ == "CommError" else e
    if not isinstance(cause, ValueError) or http_status(e) is not None:
        return False
    text = str(cause).lower()
    return any(m in text for m in _NOT_FOUND_MARKERS)


def describe(e: BaseException) -> str:
    """W&B's answer in a few words: `HTTP 403: permission denied`, `no usable answer (...)`.

    wandb-core's messages span lines ("giving up after 2 attempt(s)" / "while retrying:
    HTTP 500: ..."); they are joined, not cut at the first line, so the status survives.
    """
    from ups.errors import one_line

    text = one_line(e, whole=True, limit=240)
    status = http_status(e)
    if status:
        return f"HTTP {status}: {text}"
    if type(e).__name__ == "CommError" or type(wrapped(e)).__name__ == "WandbApiFailedError":
        return f"no usable answer ({text})"
    return f"{type(e).__name__}: {text}"


def unavailable(what: str, e: BaseException) -> RemoteUnavailableError:
    return RemoteUnavailableError(
        f"could not ask W&B about {what}: {describe(e)}; nothing was trained or published "
        "(check WANDB_API_KEY and its read rights on the project, WANDB_BASE_URL, or retry later)")


def lookup_run(api: Any, path: str) -> Any:
    """The run at `path`; NoRemoteCheckpoint when W&B says it does not exist."""
    from ups.errors import one_line
    from ups.remote.store import NoRemoteCheckpoint

    try:
        return api.run(path)
    except Exception as e:  # noqa: BLE001 - classified below, never swallowed
        if is_not_found(e):
            raise NoRemoteCheckpoint(f"W&B run {path} not found ({one_line(wrapped(e) or e, typed=True)})") from e
        raise unavailable(f"run {path}", e) from e


def lookup_artifact(api: Any, name: str, type_: str, run_path: str) -> Any:
    """The artifact version `name` (with its `:alias`); NoRemoteCheckpoint when W&B says none exists."""
    from ups.remote.store import NoRemoteCheckpoint

    if ":" not in name.rsplit("/", 1)[-1]:
        raise ValueError(f"{name}: an artifact lookup needs a version or alias (':latest')")
    try:
        return api.artifact(name, type=type_)
    except Exception as e:  # noqa: BLE001 - classified below, never swallowed
        if is_not_found(e):
            raise NoRemoteCheckpoint(f"W&B run {run_path} has no checkpoints (no artifact {name}; a project "
                                     "this key cannot read looks the same)") from e
        raise unavailable(f"artifact {name}", e) from e
