"""A PATH that lacks some commands (e.g. git, as on the pytorch/pytorch images), for real script runs.

Every executable of the current PATH is linked into one directory, except the named
ones; a stub `apt-get` that "installs" git (links the real one in) can be added, so a
script's install-what-is-missing path runs for real without touching the system.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

APT_GET_STUB = """#!/bin/sh
# stand-in for apt-get: `install ... git` links the real git into this directory
echo "apt-get $*" >> "$(dirname "$0")/apt-get.calls"
case "$*" in *install*git*) ln -sf {git} "$(dirname "$0")/git" ;; esac
exit 0
"""


def path_without(bin_dir: Path, missing: set[str], apt_get_installs_git: bool = False) -> str:
    bin_dir.mkdir(parents=True, exist_ok=True)
    real_git = shutil.which("git")
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for entry in os.scandir(folder):
            link = bin_dir / entry.name
            if entry.name in missing or link.exists() or not os.access(entry.path, os.X_OK):
                continue
            link.symlink_to(entry.path)
    if apt_get_installs_git:
        stub = bin_dir / "apt-get"
        stub.write_text(APT_GET_STUB.format(git=real_git))
        stub.chmod(0o755)
    return str(bin_dir)
