"""The real onstart script in a sandbox: what the onstart end-to-end test and the
restart-cost bench (`bench/restart_cost.py`) both run.

A local git repository holds this working tree plus the config an instance trains; a
sandbox directory stands in for `/workspace`; the script clones the repository,
installs the clone with `pip install --no-deps --no-index --target` into the sandbox
(first on PYTHONPATH, so the caller's environment is left alone), generates the data
and trains, syncing to a `file://` remote.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from ups.launch.onstart import generate_onstart_script

REPO = Path(__file__).resolve().parents[1]


def git(*args: str, cwd: Path) -> str:
    out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main",
                          *args], cwd=cwd, check=True, capture_output=True, text=True)
    return out.stdout


def origin_repo(repo: Path, config_name: str, config: dict[str, Any]) -> Path:
    """`repo`: a git repository of this working tree (tracked and untracked, not ignored) plus `config`."""
    files = git("ls-files", "-co", "--exclude-standard", "-z", cwd=REPO).split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, repo / name)
    (repo / config_name).write_text(yaml.safe_dump(config, sort_keys=False))
    git("init", "-q", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "project", cwd=repo)
    return repo


class OnstartSandbox:
    """One rented machine: its own /workspace, its own installed copy of the project, the script."""

    def __init__(self, root: Path, origin: Path, remote: Path, config_name: str, resume_from_remote: bool = False,
                 path: Optional[str] = None, python_exe: str = sys.executable,
                 install_cmd: Optional[list[str]] = None, pythonpath: tuple[str, ...] = ()) -> None:
        self.root, self.site = root, root / "site-packages"
        self.workspace = root / "workspace"
        self.checkpoints = self.workspace / "universal_simulator" / "checkpoints"
        self.script = root / "onstart.sh"
        self.script.write_text(generate_onstart_script(
            config_name, repo_url=str(origin), workspace=str(self.workspace), remote_uri=remote.as_uri(),
            resume_from_remote=resume_from_remote, python_exe=python_exe,
            install_cmd=install_cmd or self._install_script(),
        ))
        self.env = {
            "PATH": path or os.environ["PATH"], "HOME": str(root),
            "PYTHONPATH": os.pathsep.join([str(self.site), *pythonpath]),
            "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
        }

    def _install_script(self) -> list[str]:
        """The install, as a script of its own: the command itself, with this machine's long
        paths, would pass the launcher's cap on `--install-cmd` (`MAX_INSTALL_CHARS`)."""
        pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
               "--target", str(self.site), "."]
        script = self.root / "install.sh"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text("exec " + " ".join(shlex.quote(a) for a in pip) + "\n")
        return ["sh", str(script)]


def image_python(root: Path, only: Optional[Iterable[str]] = None) -> tuple[str, str]:
    """An image's `python`, which has neither ups nor pip: `python -S` (no site-packages, so
    no `.pth` file puts this checkout on its path) with a directory of links to the
    packages of this environment, `only` those named, or all but ups and pip.
    Returns (a PATH on which `image-python` is that python and this environment's scripts,
    such as the `vastai` CLI the script's own install brings, are found; the directory for
    PYTHONPATH)."""
    import sysconfig

    site, bin_dir = root / "image-site", root / "image-bin"
    site.mkdir(), bin_dir.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.split("-")[0].split(".")[0].lower()
        wanted = name in set(only) if only is not None else name not in {"ups", "pip", "__editable__", ""}
        if wanted and not entry.name.endswith(".pth"):
            (site / entry.name).symlink_to(entry)
    (bin_dir / "image-python").write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    (bin_dir / "image-python").chmod(0o755)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    return path, str(site)
