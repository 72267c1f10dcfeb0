"""The script a Vast.ai instance runs on every container start, generated safely.

Why this module exists: Vast reruns the onstart script whenever the container starts —
the first boot, and again after every outbid pause or host restart. The spec's script
wiped checkpoints on every start, built shell lines by string interpolation, and ended
with `sudo shutdown -h now`, which inside a Docker container stops nothing that bills.
Here:

- the script is idempotent: the fresh-start wipe happens only on the instance's first
  boot (a marker in the workspace); every later start auto-resumes from local state, or
  from the remote when local state is gone;
- every value is validated and then shell-quoted once, into a variable at the top, so a
  run id, branch or path can never become a command;
- secrets are never in it: they reach the instance as environment variables;
- after a successful run the instance labels itself and stops (or destroys) itself
  through the Vast API with its own CONTAINER_ID / CONTAINER_API_KEY.

Workspace, repo URL, install command and python are parameters, so a test can run the
generated script for real in a temporary directory.
"""

from __future__ import annotations

import base64
import gzip
import re
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ups.errors import LaunchError
from ups.resume.layout import STATUS_FILE

DEFAULT_WORKSPACE = "/workspace"
DEFAULT_PROJECT_DIR_NAME = "universal_simulator"
MAX_SCRIPT_BYTES = 16 * 1024  # the spec's onstart budget; tested at max-length inputs
VAST_ONSTART_MAX_CHARS = 4048  # what the Vast API accepts in the `onstart` field
MAX_INSTALL_CHARS = 256
STATE_DIR_NAME = ".ups_onstart"  # markers and the unpacked script live here
LOG_FILE_NAME = "ups_onstart.log"
RESUME_MODES = ("allow", "must", "never")
GIT_METHODS = ("clone", "docker")
SHUTDOWN_ACTIONS = ("stop", "destroy")

# Length caps keep any valid input packable into Vast's 4048 characters (tested with
# random text at every cap, which compresses worst).
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # W&B's run id rule
_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]{0,99}")
_REL_PATH = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9._/+-]{0,127}")
_ABS_PATH = re.compile(r"/[A-Za-z0-9._/+-]{0,127}")
_DIR_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S{1,250}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_run_id(run_id: str) -> str:
    """A W&B run id: letters, digits, `-`, `_`, 1-64 characters."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise LaunchError(
            f"--resume-from-wandb {run_id!r}: not a W&B run id "
            "(letters, digits, '-' and '_', 1-64 characters; copy it from the run's URL)"
        )
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
            f"--config {path!r}: use a plain path (letters, digits, '._/+-'), "
            "e.g. configs/train_burgers_32dim.yaml"
        )
    return path


def validate_workspace(path: str) -> str:
    """An absolute directory on the instance without '..' or shell characters."""
    if not isinstance(path, str) or not _ABS_PATH.fullmatch(path) or "/../" in f"{path}/":
        raise LaunchError(f"--workspace {path!r}: use an absolute path such as /workspace")
    return path.rstrip("/") or "/"


def validate_remote_uri(uri: str) -> str:
    """An fsspec URI (`file:///x`, `s3://bucket/prefix`); it is quoted, never parsed by the shell."""
    if not isinstance(uri, str) or not _URI.fullmatch(uri):
        raise LaunchError(f"--checkpoint-remote {uri!r}: use an fsspec URI such as s3://bucket/run1")
    if re.match(r"[^:]*://[^/]*@", uri):  # user:password@host would put a secret in the script
        raise LaunchError("--checkpoint-remote: no credentials in the URI; pass them with --env")
    return uri


def validate_plain_text(value: str, what: str, max_len: int = 256) -> str:
    """Free text that will be shell-quoted: no control characters, no leading '-'."""
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise LaunchError(f"{what} {value!r}: must be 1-{max_len} characters")
    if _CONTROL.search(value) or value.startswith("-"):
        raise LaunchError(f"{what} {value!r}: no control characters or leading '-'")
    return value


def _install_arg(arg: str) -> str:
    # Install arguments are quoted one by one (so `&&` or `;` stay literal text);
    # options like `-e` are expected here, control characters are not.
    if not isinstance(arg, str) or _CONTROL.search(arg):
        raise LaunchError(f"--install-cmd argument {arg!r}: no control characters")
    return arg


def _choice(value: str, choices: Sequence[str], what: str) -> str:
    if value not in choices:
        raise LaunchError(f"{what} {value!r}: choose one of {', '.join(choices)}")
    return value


def default_repo_url() -> str:
    """The `origin` remote of the checkout this package runs from (the spec's default)."""
    root = Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "remote", "get-url", "origin"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise LaunchError(
            f"no git remote 'origin' in {root}: pass --repo-url URL (the instance clones it)"
        ) from e
    return out.stdout.strip()


def _assign(name: str, value: str) -> str:
    # The only place a value enters the script: quoted once into a variable, and
    # referenced as "$NAME" from then on, so bash never re-parses it.
    return f"{name}={shlex.quote(value)}"


def _header(workspace: str, project_dir: str, config_path: str, python_exe: str) -> list[str]:
    return [
        "#!/bin/bash",
        "# ups onstart: generated by ups.launch.onstart. Vast runs it on every container",
        "# start; rerunning it never wipes progress. Secrets arrive as environment variables.",
        "set -euo pipefail",
        _assign("WORKSPACE", workspace),
        _assign("PROJECT_DIR", project_dir),
        _assign("CONFIG", config_path),
        _assign("PY", python_exe),
        f'STATE_DIR="$WORKSPACE/{STATE_DIR_NAME}"',
        f'LOG_FILE="$WORKSPACE/{LOG_FILE_NAME}"',
        'mkdir -p "$STATE_DIR"',
        'exec > >(tee -a "$LOG_FILE") 2>&1',
        'echo "=== ups onstart $(date -u +%Y-%m-%dT%H:%M:%SZ) ==="',
        "FIRST_BOOT=0",
        'if [ ! -e "$STATE_DIR/first_boot_done" ]; then FIRST_BOOT=1; fi',
        "",
    ]


def _fetch_code(git_method: str, repo_url: str | None, branch: str) -> list[str]:
    if git_method == "docker":
        return [
            'if [ ! -d "$PROJECT_DIR" ]; then',
            '  echo "ERROR: --git-method docker expects the project in the image at $PROJECT_DIR" >&2',
            "  exit 1",
            "fi",
            'cd "$PROJECT_DIR"',
            "",
        ]
    return [
        _assign("REPO_URL", repo_url or ""),
        _assign("BRANCH", branch),
        "# A restart keeps the checkout it has: code must not change under a running job.",
        'if [ -d "$PROJECT_DIR/.git" ]; then',
        '  echo "Keeping checkout $PROJECT_DIR at $(git -C "$PROJECT_DIR" rev-parse --short HEAD)"',
        "else",
        '  if [ -e "$PROJECT_DIR" ]; then',
        '    echo "ERROR: $PROJECT_DIR exists but is not a git checkout; remove it" >&2',
        "    exit 1",
        "  fi",
        '  rm -rf "$PROJECT_DIR.clone"  # a clone cut short by a restart',
        '  git clone -q -- "$REPO_URL" "$PROJECT_DIR.clone"',
        '  git -C "$PROJECT_DIR.clone" checkout -q "$BRANCH"',
        '  mv "$PROJECT_DIR.clone" "$PROJECT_DIR"',
        "fi",
        'cd "$PROJECT_DIR"',
        "",
    ]


def _prepare_dirs(resuming: bool, project_dir: str, checkpoint_dir: str) -> list[str]:
    ckpt = f"{project_dir}/{checkpoint_dir}"
    if resuming:
        lines = [
            "echo 'RESUME MODE: checkpoints are never cleared; resuming from local state,"
            " else from the remote'",
        ]
    else:
        lines = [
            'if [ "$FIRST_BOOT" = 1 ]; then',
            "  echo 'FRESH START: first boot of this instance, clearing old checkpoints and cache'",
            f"  rm -rf {shlex.quote(ckpt)}",
            f"  rm -rf {shlex.quote(project_dir + '/data/latent_cache')}",
            "else",
            "  echo 'RESTART: not the first boot; keeping checkpoints and auto-resuming'",
            "fi",
        ]
    return lines + [
        _assign("CKPT_DIR", ckpt),
        'mkdir -p "$CKPT_DIR" "$PROJECT_DIR/data/latent_cache"',
        'touch "$STATE_DIR/first_boot_done"',
        "",
    ]


def _install_and_data(install_cmd: Sequence[str] | None) -> list[str]:
    if install_cmd is None:
        cmd = "\"$PY\" -m pip install -e '.[launch]'"
    else:
        cmd = " ".join(shlex.quote(_install_arg(a)) for a in install_cmd)
        if len(cmd) > MAX_INSTALL_CHARS:
            raise LaunchError(f"--install-cmd: at most {MAX_INSTALL_CHARS} characters")
    return [
        'if [ ! -e "$STATE_DIR/installed" ]; then',
        "  echo 'Installing the project'",
        f"  {cmd}",
        '  touch "$STATE_DIR/installed"',
        "fi",
        "# download_data skips files that are already there and valid",
        '"$PY" scripts/download_data.py --dataset burgers --split all --config "$CONFIG"',
        "",
    ]


def _resume_sources(
    run_id: str | None, resume_mode: str, remote_uri: str | None, resuming: bool
) -> list[str]:
    """Where to resume from when the local checkpoint directory holds no state.

    Local state always wins: a restart on the same disk must not overwrite newer local
    progress with an older remote copy. The remote URI (what training syncs to) is
    preferred over a W&B run id when both are given; the run id is persisted in the
    checkpoint metadata, so the same W&B run continues either way.
    """
    if remote_uri and resuming:
        source = ['  TRAIN_ARGS+=(--resume-from "$REMOTE" --resume-mode "$RESUME_MODE")']
    elif remote_uri:  # fresh run restarted after its local state vanished
        source = [
            '  if [ "$FIRST_BOOT" = 0 ]; then',
            '    TRAIN_ARGS+=(--resume-from "$REMOTE" --resume-mode allow)',
            "  fi",
        ]
    elif run_id:
        source = ['  TRAIN_ARGS+=(--resume-from-wandb "$RUN_ID" --resume-mode "$RESUME_MODE")']
    else:
        return []
    return [
        f'if [ -e "$CKPT_DIR/{STATUS_FILE}" ]; then',
        '  echo "Local state found in $CKPT_DIR: auto-resuming from it"',
        "else",
        '  echo "No local state in $CKPT_DIR: resuming from the remote"',
        *source,
        "fi",
    ]


def _train(
    run_id: str | None, resume_mode: str, remote_uri: str | None, resuming: bool
) -> list[str]:
    lines = [_assign("RESUME_MODE", resume_mode)]
    if run_id:
        lines += [_assign("RUN_ID", run_id), 'echo "W&B run: $RUN_ID (resume mode $RESUME_MODE)"']
    lines.append('TRAIN_ARGS=(--config "$CONFIG" --stage all --auto-resume)')
    if remote_uri:
        lines += [_assign("REMOTE", remote_uri), 'TRAIN_ARGS+=(--checkpoint-remote "$REMOTE")']
    lines += _resume_sources(run_id, resume_mode, remote_uri, resuming)
    return lines + [
        'echo "Starting training: scripts/train.py ${TRAIN_ARGS[*]}"',
        "# A stop or outbid pause signals us: remember it, so it is never taken for a failure.",
        "UPS_INTERRUPTED=0",
        "trap 'UPS_INTERRUPTED=1' TERM INT HUP",
        "set +e",
        '"$PY" scripts/train.py "${TRAIN_ARGS[@]}"',
        "RC=$?",
        "set -e",
        "",
    ]


def _outcome(auto_shutdown: bool, shutdown_action: str) -> list[str]:
    # train.py exits 0 only after its uploads are flushed and the W&B run is finished,
    # so stopping the instance right after cannot lose the remote copy.
    done_action = shutdown_action if auto_shutdown else "none"
    fail_action = "stop" if auto_shutdown else "none"  # keep the disk for a post-mortem
    self_stop = '"$PY" -m ups.launch.self_stop'
    return [
        'if [ "$RC" -eq 0 ]; then',
        '  touch "$STATE_DIR/run_complete"',
        "  echo 'UPS_RUN_COMPLETE: training finished'",
        f"  {self_stop} --outcome complete --action {done_action} || {{",
        "    echo 'UPS_SHUTDOWN_FAILED: could not label/stop this instance; stop it yourself' >&2",
        "    exit 1",
        "  }",
        "  exit 0",
        "fi",
        'if [ "$UPS_INTERRUPTED" = 1 ] || [ "$RC" -ge 128 ]; then',
        '  echo "UPS_RUN_INTERRUPTED: train.py ended by a signal ($RC); the next start resumes"',
        '  exit "$RC"',
        "fi",
        'echo "UPS_RUN_FAILED: train.py exited with $RC; see $LOG_FILE"',
        f"{self_stop} --outcome failed --action {fail_action} || true",
        'exit "$RC"',
    ]


def generate_onstart_script(
    config_path: str,
    git_method: str = "clone",
    auto_shutdown: bool = False,
    branch: str = "main",
    resume_from_wandb: str | None = None,
    resume_mode: str = "allow",
    *,
    workspace: str = DEFAULT_WORKSPACE,
    repo_url: str | None = None,
    project_dir_name: str = DEFAULT_PROJECT_DIR_NAME,
    shutdown_action: str = "stop",
    remote_uri: str | None = None,
    resume_from_remote: bool = False,
    install_cmd: Sequence[str] | None = None,
    python_exe: str = "python",
    checkpoint_dir: str = "checkpoints",
) -> str:
    """The onstart script for one training run (see the module docstring).

    Resume mode (`resume_from_wandb`, or `resume_from_remote` with `remote_uri`) prints
    RESUME MODE and never clears anything; otherwise the first boot prints FRESH START
    and clears old checkpoints once. `install_cmd` is an argv list (each item quoted);
    None installs the checkout with `pip install -e '.[launch]'`.
    """
    config_path = validate_config_path(config_path)
    branch = validate_branch(branch)
    _choice(git_method, GIT_METHODS, "--git-method")
    _choice(resume_mode, RESUME_MODES, "--resume-mode")
    _choice(shutdown_action, SHUTDOWN_ACTIONS, "--shutdown-action")
    run_id = validate_run_id(resume_from_wandb) if resume_from_wandb is not None else None
    remote = validate_remote_uri(remote_uri) if remote_uri is not None else None
    if resume_from_remote and remote is None:
        raise LaunchError("--resume-from-remote needs --checkpoint-remote URI")
    if not _DIR_NAME.fullmatch(project_dir_name or ""):
        raise LaunchError(f"project directory name {project_dir_name!r}: letters, digits, '._-'")
    if not _DIR_NAME.fullmatch(checkpoint_dir):
        raise LaunchError(f"checkpoint dir {checkpoint_dir!r}: a directory name in the project")
    ws = validate_workspace(workspace)
    python_exe = validate_plain_text(python_exe, "python executable", 128)
    if git_method == "clone":
        repo_url = validate_plain_text(repo_url or default_repo_url(), "--repo-url")
    project_dir = f"{ws.rstrip('/')}/{project_dir_name}"
    resuming = run_id is not None or resume_from_remote
    lines = (
        _header(ws, project_dir, config_path, python_exe)
        + _fetch_code(git_method, repo_url, branch)
        + _prepare_dirs(resuming, project_dir, checkpoint_dir)
        + _install_and_data(install_cmd)
        + _train(run_id, resume_mode, remote, resuming)
        + _outcome(auto_shutdown, shutdown_action)
    )
    script = "\n".join(lines) + "\n"
    if len(script.encode()) > MAX_SCRIPT_BYTES:
        raise LaunchError(f"onstart script is {len(script.encode())} bytes; the limit is {MAX_SCRIPT_BYTES}")
    return script


def onstart_field(script: str, workspace: str = DEFAULT_WORKSPACE) -> str:
    """What goes in the create request's `onstart` field (the API takes 4048 characters).

    The script travels gzip+base64 encoded and is unpacked into the workspace, where it
    can also be rerun by hand. Only base64 text and validated paths appear here.
    """
    ws = validate_workspace(workspace).rstrip("/")
    packed = base64.b64encode(gzip.compress(script.encode(), mtime=0)).decode()
    field = "\n".join([
        "#!/bin/sh",
        "# ups onstart loader: unpacks the real script (gzip+base64) and runs it",
        "set -eu",
        _assign("D", f"{ws}/{STATE_DIR_NAME}"),
        'mkdir -p "$D"',
        f'echo {packed} | base64 -d | gzip -dc > "$D/onstart.sh"',
        'exec bash "$D/onstart.sh"',
    ]) + "\n"
    if len(field) > VAST_ONSTART_MAX_CHARS:
        raise LaunchError(
            f"packed onstart is {len(field)} characters; Vast accepts {VAST_ONSTART_MAX_CHARS}"
        )
    return field


def script_from_onstart_field(field: str) -> str:
    """The script inside an `onstart_field` loader (for dry runs, tests and debugging)."""
    match = re.search(r"^echo ([A-Za-z0-9+/=]+) \| base64", field, re.MULTILINE)
    if not match:
        raise LaunchError("onstart field: not a ups onstart loader")
    return gzip.decompress(base64.b64decode(match.group(1))).decode()
