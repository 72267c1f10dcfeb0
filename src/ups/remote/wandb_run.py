"""The W&B run of a training: started once, continued by every resume.

The run id is persisted in `metadata.json` (`training_wandb`), so a resumed
process — on this machine or, after a download, on a fresh one — logs into the
same run. Metrics are keyed by `trainer/global_step`, a step that is the same
for the same point of training however many times it was interrupted, so W&B
never drops a resumed point as "step less than current step".

The API key is never handled here: the SDK reads `WANDB_API_KEY` from the
environment, and every message that quotes an SDK error goes through `redact`.
"""

from __future__ import annotations

import os
import re
import secrets
import string
from pathlib import Path
from typing import Any, Optional

from ups.config import Config
from ups.errors import ConfigError, RemoteError, RemoteUnavailableError
from ups.remote.wandb_history import Branch, plan_branch, without_resume_env
from ups.resume.metadata import read_metadata, update_metadata

GLOBAL_STEP = "trainer/global_step"
RESUME_MODES = ("allow", "must", "never")
WANDB_MODES = ("online", "offline", "disabled")
# W&B refuses a run id that is empty, has whitespace at an end or holds one of `:;,#?/'`
# (wandb 0.31, wandb/sdk/wandb_settings.py `validate_run_id`), and an artifact name over
# 128 characters (wandb/sdk/artifacts/_validators.py `NAME_MAXLEN`; ours is
# `ups-checkpoints-<id>`, 16 more). Of what W&B accepts, ups takes what is also safe
# unquoted in a shell and as a file name: letters, digits and `._+=@-`, not starting with
# `-` (an option) or `.` (a hidden or parent path). Every id W&B generates itself passes.
RUN_ID_MAX = 128 - len("ups-checkpoints-")
_RUN_ID = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9._+=@-]{{0,{RUN_ID_MAX - 1}}}")
RUN_ID_RULE = f"letters, digits and ._+=@- (not first: . -), 1-{RUN_ID_MAX} characters"


def validate_run_id(run_id: str, source: str = "--resume-from-wandb") -> str:
    """A W&B run id that is also safe in a shell line and a path (see `_RUN_ID`)."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"{source}: {run_id!r} is not a valid W&B run id ({RUN_ID_RULE})")
    return run_id


def validate_resume_mode(mode: str) -> str:
    if mode not in RESUME_MODES:
        raise ConfigError(f"--resume-mode: {mode!r} is not one of {', '.join(RESUME_MODES)}")
    return mode


def new_run_id() -> str:
    """A fresh id in W&B's own style (8 lowercase letters and digits)."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def persisted_run_id(checkpoint_dir: Path) -> Optional[str]:
    info = read_metadata(checkpoint_dir).get("training_wandb") or {}
    run_id = info.get("id")
    return validate_run_id(run_id, f"{checkpoint_dir}/metadata.json training_wandb.id") if run_id else None


def persisted_resume_mode(checkpoint_dir: Path) -> Optional[str]:
    """A mode recorded by `CheckpointManager.setup_wandb_resume` for the next start."""
    mode = (read_metadata(checkpoint_dir).get("training_wandb") or {}).get("resume")
    return validate_resume_mode(mode) if mode else None


def wandb_mode(cfg: Config) -> Optional[str]:
    """The effective W&B mode, None when logging is off. `WANDB_MODE` in the environment wins."""
    w = cfg.logging.wandb
    if not w.enabled:
        return None
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    mode = {"dryrun": "offline"}.get(env, env) if env in WANDB_MODES + ("dryrun",) else w.mode
    return None if mode == "disabled" else mode


def export_mode(cfg: Config) -> Optional[str]:
    """Put the effective mode in `WANDB_MODE` before the SDK's first setup; returns it.

    A `mode=` given only to `wandb.init` comes too late: the SDK's process-wide setup
    (wandb.setup, run by the first `wandb.Api()` or `wandb.init`) has by then started
    wandb-core with the environment's mode, and it posts telemetry to the W&B host
    (`/sdk/otel/v1/metrics`, seen on a loopback server) even for an offline run.
    """
    w = cfg.logging.wandb
    if not w.enabled:
        return None
    mode = wandb_mode(cfg) or "disabled"
    os.environ["WANDB_MODE"] = mode
    if os.environ.get("WANDB_RESUME"):
        # Read once at that same setup, it would clash with the `resume_from`/`fork_from` a resume
        # passes (mutually exclusive, wandb/sdk/wandb_settings.py); ups decides that itself.
        print(f"Note: WANDB_RESUME={os.environ.pop('WANDB_RESUME')} is ignored: ups continues the run itself "
              "(--resume-mode)", flush=True)
    return mode


def start_wandb(cfg: Config, checkpoint_dir: Path, run_id: Optional[str] = None, resume: Optional[str] = None) -> Any:
    """Start (or continue) the W&B run; None when W&B logging is off.

    `resume="never"` starts a new run (a new id); otherwise the id given, else the
    persisted one, is continued. Either way the history continues from the last step the
    resume keeps (`ups.remote.wandb_history`).
    """
    mode = wandb_mode(cfg)
    if mode is None:
        return None
    resume = validate_resume_mode(resume or persisted_resume_mode(checkpoint_dir) or "allow")
    persisted = persisted_run_id(checkpoint_dir)
    if resume == "never":  # a new run, forked from the one this directory logged to (if any)
        previous, run_id = persisted, run_id or new_run_id()
    else:
        previous = run_id = run_id or persisted
        run_id = run_id or new_run_id()
    if mode == "online":
        mode = _online_or_fallback(cfg)
    run_id = validate_run_id(run_id, "W&B run id")
    branch = plan_branch(checkpoint_dir, resume=resume, run_id=run_id, previous=previous)
    run = _init_branched(cfg, mode, run_id, resume, branch)
    run.define_metric(GLOBAL_STEP)
    run.define_metric("*", step_metric=GLOBAL_STEP)
    update_metadata(checkpoint_dir, training_wandb={
        "id": run.id, "name": run.name, "project": run.project, "entity": run.entity,
        # an offline run has no URL (reading `run.url` prints an SDK warning)
        "url": None if mode == "offline" else getattr(run, "url", None), "mode": mode,
    })
    if mode == "offline":
        print(f"W&B is offline: metrics and checkpoints are kept locally until `wandb sync {sync_dir(run)}`",
              flush=True)
    branched = branch is not None and run.id == run_id
    how = f"{branch.kind} of {branch.source} at step {branch.step}" if branched else f"resume={resume}"
    print(f"W&B run {run.id} ({mode}, {how})", flush=True)
    return run


def sync_dir(run: Any) -> str:
    """The local directory `wandb sync` uploads for this run."""
    return str(getattr(getattr(run, "settings", None), "sync_dir", None) or "wandb/offline-run-*")


def _online_or_fallback(cfg: Config) -> str:
    """"online" when W&B answers now; else an error at once, or "offline" (`logging.wandb.fallback`).

    Without this, `wandb.init` fails only after `init_timeout` (90 s in wandb 0.31,
    wandb/sdk/wandb_settings.py) and training never starts.
    """
    import wandb

    from ups.remote.wandb_lookup import describe
    from ups.remote.wandb_store import api_timeout

    try:
        wandb.Api(timeout=min(api_timeout(), 20.0))  # verifies the key: one `Viewer` query
        return "online"
    except Exception as e:  # noqa: BLE001 - any failure means W&B cannot be used now
        why = describe(e)
        if cfg.logging.wandb.fallback != "offline":
            raise RemoteUnavailableError(
                f"W&B cannot be reached for an online run: {why}; nothing was trained (fix WANDB_API_KEY / "
                "WANDB_BASE_URL, or set logging.wandb.fallback: offline to train now and sync later)") from e
        print(f"⚠️  W&B cannot be reached ({why}): logging offline instead (logging.wandb.fallback: offline)",
              flush=True)
        os.environ["WANDB_MODE"] = "offline"
        return "offline"


def _init_branched(cfg: Config, mode: str, run_id: str, resume: str, branch: Optional[Branch]) -> Any:
    """`wandb.init` continuing the history at `branch` (see ups.remote.wandb_history); plainly
    when there is none, or when the server refuses it (with the warning naming what repeats)."""
    if branch is None:
        return _init(cfg, mode, run_id, resume)
    without_resume_env()
    try:
        return _init(cfg, mode, run_id, None, branch.init_kwargs())
    except RemoteError as e:
        import wandb

        from ups.errors import one_line

        wandb.teardown()  # the failed init left its service half set up
        print(branch.refused(run_id, one_line(e.__cause__ or e)), flush=True)
        return _init(cfg, mode, run_id, resume)  # allow | must for a rewind, never for a fork


def _init(cfg: Config, mode: str, run_id: str, resume: Optional[str], branch: Optional[dict] = None) -> Any:
    import wandb

    from ups.errors import one_line

    w = cfg.logging.wandb
    # run.finish() waits for every upload unless finish_timeout is set (0 = forever,
    # wandb/sdk/wandb_settings.py); it is enforced by wandb-core from the run's settings,
    # so it is fixed here, at init, to the grace a SIGTERM allows. What is not uploaded
    # by then stays on disk for `wandb sync`.
    settings = wandb.Settings(finish_timeout=max(float(cfg.checkpoint.flush_on_signal_seconds), 1.0))
    try:
        return wandb.init(
            project=w.project, entity=w.entity, name=w.run_name, group=w.group, tags=list(w.tags) or None,
            mode=mode, id=run_id, resume=resume, config=cfg.as_dict(), settings=settings, **(branch or {}),
        )
    except Exception as e:
        how = ", ".join(f"{k}={v}" for k, v in branch.items()) if branch else f"resume={resume}"
        raise RemoteError(f"W&B could not start run {run_id} ({how}): {one_line(e, typed=True)}") from e


def finish_wandb(run: Any, exit_code: int = 0) -> None:
    """Finish the run; a preempted one is marked so W&B shows it as preempted, not crashed."""
    if run is None:
        return
    if exit_code == 143 and hasattr(run, "mark_preempting"):  # SIGTERM: a spot preemption
        try:
            run.mark_preempting()
        except Exception:  # noqa: BLE001 - cosmetic; finishing matters more
            pass
    run.finish(exit_code=exit_code)
