"""The training job, start to end, as one linear `with` sequence.

    lock -> pull from the remote -> W&B run -> sync -> pipeline -> flush

Each step is entered in order and left in reverse: the sync is flushed and the
W&B run finished before the lock is released, whatever happened. Nothing below
calls back up here: the pipeline gets the tracker, the W&B run and the observers
of its progress as arguments.

Under torchrun every rank enters the process group (`ups.parallel`); rank 0
alone takes the directory, talks to the remote and W&B (`group.rank0_only`: the
other ranks wait, and stop with its error if it fails).
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any, Optional

from ups import stages
from ups.config import Config
from ups.errors import RemoteError
from ups.parallel import join
from ups.remote.wandb_run import export_mode, validate_resume_mode, validate_run_id
from ups.resume.atomic import remove_stale_temps
from ups.resume.layout import METADATA_FILE, METRICS_FILE, STATE_DIR, STATUS_FILE
from ups.resume.lock import CheckpointDirLock
from ups.resume.signals import StopRequest
from ups.resume.tracker import StageTracker
from ups.pipeline.context import runtime_device
from ups.pipeline.runner import RunOptions, run_pipeline
from ups.remote.session import Session


def train_from_args(cfg: Config, args: argparse.Namespace) -> int:
    if args.resume_from_wandb and args.resume_from:
        raise RemoteError("give one of --resume-from-wandb RUN_ID and --resume-from URI, not both")
    run_id = validate_run_id(args.resume_from_wandb) if args.resume_from_wandb else None
    mode = validate_resume_mode(args.resume_mode)
    export_mode(cfg)  # before anything sets the SDK up: offline and disabled send nothing
    resuming = bool(run_id or args.resume_from)
    opts = RunOptions(stage=args.stage, auto_resume=args.auto_resume or resuming, device=args.device,
                      config_path=args.config, config_overrides=tuple(getattr(args, "overrides", []) or []))
    remote = Session(cfg, run_id=run_id, resume_from=args.resume_from, mode=mode,
                     remote=args.checkpoint_remote or cfg.checkpoint.remote,
                     take_over=getattr(args, "take_over_remote", False))
    run_job(cfg, opts, remote)
    return 0


def run_job(cfg: Config, opts: RunOptions, remote: Optional[Session] = None) -> dict[str, str]:
    """Train as `opts` asks, with `remote` (downloads, W&B, remote copy) when given: {stage: action}."""
    device = runtime_device(cfg, opts.device)
    with join(device) as group, group.quiet(), contextlib.ExitStack() as job:
        stop = job.enter_context(StopRequest(escalate=not group.distributed))
        taken = group.rank0_only(lambda: _take_checkpoint_dir(cfg, remote, job))
        tracker, wandb_run, observers = taken if taken is not None else (None, None, ())
        return run_pipeline(cfg, opts, group, stop, tracker, wandb_run, observers)


def _take_checkpoint_dir(cfg: Config, remote: Optional[Session],
                         job: contextlib.ExitStack) -> tuple[StageTracker, Any, tuple]:
    """Rank 0: lock the directory (for the whole job), pull, start W&B and the sync, sweep leftovers."""
    lock = job.enter_context(CheckpointDirLock(cfg.checkpoint_dir))
    if lock.took_over_stale_lock():
        print(f"Took over a stale lock left by {lock.previous_holder}", flush=True)
    wandb_run, observers = None, ()
    if remote is not None:
        target = remote.pull()
        wandb_run, observers = job.enter_context(remote.connected(target))
    _sweep_unfinished_writes(cfg)
    return StageTracker(cfg.checkpoint_dir), wandb_run, observers


def _sweep_unfinished_writes(cfg: Config) -> None:
    written = (STATUS_FILE, METADATA_FILE, METRICS_FILE, *(f for s in stages.STAGES for f in s.files))
    state_dirs = [cfg.checkpoint_dir / STATE_DIR / s.name for s in stages.STAGES]
    for leftover in remove_stale_temps(cfg.checkpoint_dir, written, state_dirs):
        print(f"Removed an unfinished write left by a killed run: {leftover.name}", flush=True)

