"""A stand-in for `wandb.Api` that serves checkpoint artifacts from local directories.

Only the surface `ups.remote.wandb_store` uses, raising what wandb 0.31 raises
(checked against a loopback server, see tests/wandb_server.py):

- `Api(overrides=, timeout=)`;
- `.run(path)`: a missing run is `CommError(msg, RunNotFoundError)` (`normalize_exceptions`
  in wandb/apis/normalize.py wraps the ValueError from wandb/apis/public/runs.py);
- `.artifact(name, type=)`: the name must carry a version or alias (`:latest`, `:v3`); a
  missing one is `CommError(msg, ValueError("artifact membership ... not found in ..."))`
  (wandb/sdk/artifacts/artifact.py `_from_name`), a `type=` that differs is
  `CommError(msg, ValueError("type ... specified but ..."))`;
- `status=403` (or 401, 429, 500 ...): every query fails as wandb-core reports an HTTP
  error, `CommError(msg, WandbApiFailedError(response=ApiErrorResponse(http_status=...)))`;
- `.artifact_exists` fails the test: its False means "not found" *or* "could not ask";
- `artifact.get_entry(name)` (KeyError when absent), `entry.download(root=, skip_cache=)`.

Install it with `monkeypatch.setattr(wandb, "Api", fake)`. Nothing here touches the network.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

from wandb.errors import CommError

ARTIFACT_TYPE = "ups-checkpoint"


def http_error(status: int, message: str = "permission denied") -> CommError:
    """What `wandb.Api` raises when the server answers `status` (wandb 0.31)."""
    from wandb.proto.wandb_api_pb2 import ApiErrorResponse
    from wandb.sdk.lib.service.service_connection import WandbApiFailedError

    cause = WandbApiFailedError(message, ApiErrorResponse(message=message, http_status=status))
    return CommError(message, cause)


def not_found(message: str) -> CommError:
    return CommError(message, ValueError(message))


class FakeApi:
    """`runs` maps a run id to the directory its `:latest` artifact serves (None: run without artifact)."""

    def __init__(self, runs: dict[str, Optional[Path]], corrupt: Optional[Callable[[str, Path, int], None]] = None,
                 error: Optional[Exception] = None, status: Optional[int] = None,
                 types: Optional[dict[str, str]] = None):
        self.runs = runs
        self.types = types or {}  # run id -> the type its artifact was logged with (default ups-checkpoint)
        error = error if error is not None or status is None else http_error(status)
        self.corrupt = corrupt  # called (name, downloaded path, attempt) after each download
        self.error = error  # raised by every call (an unreachable server)
        self.calls: list[tuple] = []
        self.downloads: dict[str, int] = {}

    def __call__(self, overrides=None, timeout=None) -> "FakeApi":
        self.calls.append(("Api", dict(overrides or {}), timeout))
        return self

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def run(self, path: str):
        self.calls.append(("run", path))
        self._check()
        run_id = path.split("/")[-1]
        if run_id not in self.runs:
            raise not_found(f"Could not find run <Run {path} (not found)>")
        return object()

    def artifact_exists(self, name: str, type=None) -> bool:
        raise AssertionError("artifact_exists answers False for a 403 or a 5xx: ask for the artifact instead")

    def artifact(self, name: str, type=None) -> "FakeArtifact":
        self.calls.append(("artifact", name, type))
        self._check()
        base, _, version = name.split("/")[-1].partition(":")
        if version not in ("latest", "v0"):  # the fake holds one version per run
            raise not_found(f"artifact membership {base + ':' + version!r} not found in 'entity/project'")
        run_id = base.removeprefix("ups-checkpoints-")
        directory = self.runs.get(run_id)
        if directory is None:
            raise not_found(f"artifact membership {base + ':' + version!r} not found in 'entity/project'")
        logged = self.types.get(run_id, ARTIFACT_TYPE)
        if type is not None and type != logged:
            raise CommError(f"type {type!r} specified but this artifact is of type {logged!r}",
                            ValueError(f"type {type!r} specified but this artifact is of type {logged!r}"))
        return FakeArtifact(self, directory)


class FakeArtifact:
    def __init__(self, api: FakeApi, directory: Path):
        self.api, self.directory = api, directory

    def get_entry(self, name: str) -> "FakeEntry":
        if not (self.directory / name).is_file():
            raise KeyError(f"Path not contained in artifact: {name}")
        return FakeEntry(self, name)


class FakeEntry:
    def __init__(self, artifact: FakeArtifact, name: str):
        self.artifact, self.path = artifact, name

    def download(self, root: Optional[str] = None, skip_cache: Optional[bool] = None) -> str:
        api = self.artifact.api
        api.downloads[self.path] = api.downloads.get(self.path, 0) + 1
        dest = Path(root) / self.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.artifact.directory / self.path, dest)
        if api.corrupt is not None:
            api.corrupt(self.path, dest, api.downloads[self.path])
        return str(dest)
