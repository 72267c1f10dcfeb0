"""A stand-in for `wandb.Api` that serves checkpoint artifacts from local directories.

Only the surface `ups.remote.wandb_store` uses: `Api(overrides=, timeout=)`, `.run(path)`
(a missing run raises ValueError, as the SDK's RunNotFoundError does),
`.artifact_exists(name, type=)`, `.artifact(name, type=)`, `artifact.get_entry(name)`
(KeyError when absent) and `entry.download(root=, skip_cache=)`. Install it with
`monkeypatch.setattr(wandb, "Api", fake)`. Nothing here touches the network.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional


class FakeApi:
    """`runs` maps a run id to the directory its `:latest` artifact serves (None: run without artifact)."""

    def __init__(self, runs: dict[str, Optional[Path]], corrupt: Optional[Callable[[str, Path, int], None]] = None,
                 error: Optional[Exception] = None):
        self.runs = runs
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
            raise ValueError(f"Could not find run {path}")
        return object()

    def artifact_exists(self, name: str, type=None) -> bool:
        self.calls.append(("artifact_exists", name, type))
        self._check()
        return self._dir(name) is not None

    def artifact(self, name: str, type=None) -> "FakeArtifact":
        self.calls.append(("artifact", name, type))
        self._check()
        directory = self._dir(name)
        if directory is None:
            raise ValueError(f"artifact {name} not found")
        return FakeArtifact(self, directory)

    def _dir(self, name: str) -> Optional[Path]:
        base = name.split("/")[-1].split(":")[0]
        run_id = base.removeprefix("ups-checkpoints-")
        return self.runs.get(run_id)


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
