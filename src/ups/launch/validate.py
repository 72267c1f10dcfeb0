"""Validation of every value that the launcher places into an onstart script.

Why a module of its own: the script is shell, so each value is checked against a
narrow rule here *and* shell-quoted where it is placed (`ups.launch.onstart`). Either
defence alone stops `x'; touch /tmp/pwned; '`; both are tested. The length caps keep
any valid input packable into the 4096 characters Vast accepts for `onstart` (tested
with random text at every cap, which compresses worst).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ups.errors import ConfigError, LaunchError

RESUME_MODES = ("allow", "must", "never")
GIT_METHODS = ("clone", "docker")
SHUTDOWN_ACTIONS = ("stop", "destroy")
# What fits the packed onstart field with every other value at its cap (tests/unit/test_onstart.py)
MAX_TEXT_CHARS = 160  # repo URL, remote URI
MAX_INSTALL_CHARS = 160
MAX_WORKSPACE_CHARS = 96
MAX_WANDB_PATH_CHARS = 192  # entity/project/run id, as the launcher resolves it
MAX_RUN_ID_CHARS = 64  # tighter than W&B's own limit: what fits the packed onstart field

_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,99}")
_REL_PATH = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9._/+-]{0,127}")
_ABS_PATH = re.compile(r"/[A-Za-z0-9._/+-]{0,127}")
_DIR_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_USERINFO = re.compile(r"[^:/]*://[^/]*@")  # scheme://user:password@host
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_run_id(run_id: str) -> str:
    """A W&B run id, by the project's one rule (`ups.remote.wandb_run.validate_run_id`),
    at most MAX_RUN_ID_CHARS long so that every valid input still packs into Vast's field."""
    from ups.remote.wandb_run import validate_run_id as wandb_rule  # pulls in pydantic: lazy

    try:
        wandb_rule(run_id, "--resume-from-wandb")
    except ConfigError as e:
        raise LaunchError(str(e)) from e
    if len(run_id) > MAX_RUN_ID_CHARS:
        raise LaunchError(f"--resume-from-wandb: the run id is {len(run_id)} characters; the launcher takes at most "
                          f"{MAX_RUN_ID_CHARS} (the onstart script must fit Vast's 4096-character field)")
    return run_id


def validate_branch(branch: str) -> str:
    """A git branch, tag or commit: no leading '-', no '..', no spaces or shell characters."""
    ok = isinstance(branch, str) and _BRANCH.fullmatch(branch)
    if not ok or ".." in branch or branch.endswith(("/", ".lock", ".")):
        raise LaunchError(f"--branch {branch!r}: not a git branch, tag or commit name")
    return branch


def validate_config_path(path: str) -> str:
    """A config path, relative to the project checkout or absolute on the instance."""
    if not isinstance(path, str) or not (_REL_PATH.fullmatch(path) or _ABS_PATH.fullmatch(path)):
        raise LaunchError(
            f"--config {path!r}: use a plain path of at most 128 characters "
            "(letters, digits, '._/+-'), e.g. configs/train_burgers_32dim.yaml"
        )
    return path


def validate_workspace(path: str) -> str:
    """An absolute directory on the instance without '..' or shell characters."""
    if not isinstance(path, str) or not _ABS_PATH.fullmatch(path) or "/../" in f"{path}/" \
            or len(path) > MAX_WORKSPACE_CHARS:
        raise LaunchError(f"--workspace {path!r}: use an absolute path of at most {MAX_WORKSPACE_CHARS} characters, "
                          "such as /workspace")
    return path.rstrip("/") or "/"


def validate_dir_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _DIR_NAME.fullmatch(name):
        raise LaunchError(f"{what} {name!r}: one directory name (letters, digits, '._-')")
    return name


def validate_checkpoint_dir(path: str) -> str:
    """`training.checkpoint_dir`: relative to the checkout, or absolute; plain names, no '..'."""
    names = path.removeprefix("/").split("/") if isinstance(path, str) and len(path) <= 128 else [""]
    if not all(_DIR_NAME.fullmatch(name) for name in names):
        raise LaunchError(
            f"checkpoint directory {path!r}: use a plain path of directory names (letters, digits, '._-'), "
            "e.g. checkpoints or checkpoints/run1"
        )
    return path


def validate_remote_uri(uri: str) -> str:
    """An fsspec URI (`file:///x`, `s3://bucket/prefix`); quoted, never parsed by the shell."""
    if not isinstance(uri, str) or not _URI.fullmatch(uri) or len(uri) > MAX_TEXT_CHARS:
        raise LaunchError(f"--checkpoint-remote {uri!r}: use an fsspec URI of at most {MAX_TEXT_CHARS} characters, "
                          "such as s3://bucket/run1")
    if _USERINFO.match(uri):
        raise LaunchError("--checkpoint-remote: no credentials in the URI; pass them with --env")
    return uri


def validate_repo_url(url: str) -> str:
    url = validate_plain_text(url, "--repo-url")
    if _USERINFO.match(url):
        raise LaunchError("--repo-url: no credentials in the URL; use a public URL, "
                          "or bake the code into the image (--git-method docker)")
    return url


def validate_plain_text(value: str, what: str, max_len: int = MAX_TEXT_CHARS) -> str:
    """Free text that will be shell-quoted: no control characters, no leading '-'."""
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise LaunchError(f"{what} {value!r}: must be 1-{max_len} characters")
    if _CONTROL.search(value) or value.startswith("-"):
        raise LaunchError(f"{what} {value!r}: no control characters or leading '-'")
    return value


def validate_install_cmd(argv: Sequence[str]) -> list[str]:
    """An install command as argv; each item is quoted on its own, so `;` stays text."""
    if isinstance(argv, str) or not argv:
        raise LaunchError("--install-cmd: give the command as a list of arguments")
    for arg in argv:
        if not isinstance(arg, str) or _CONTROL.search(arg):
            raise LaunchError(f"--install-cmd argument {arg!r}: no control characters")
    if sum(len(a) + 1 for a in argv) > MAX_INSTALL_CHARS:
        raise LaunchError(f"--install-cmd: at most {MAX_INSTALL_CHARS} characters")
    return list(argv)


def validate_choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise LaunchError(f"{what} {value!r}: choose one of {', '.join(choices)}")
    return value
