"""One training session from the command line: remote download, W&B, the pipeline, cleanup.

The pieces that surround `run_pipeline` and must be closed in `finally`
whatever happens: the W&B run and the remote sync.
"""

from __future__ import annotations

import argparse

from ups.config import Config
from ups.remote.wandb_run import start_wandb, validate_run_id
from ups.training.runner import RunOptions, run_pipeline


def train_from_args(cfg: Config, args: argparse.Namespace) -> int:
    auto_resume = args.auto_resume
    run_id = None
    if args.resume_from_wandb:
        run_id = validate_run_id(args.resume_from_wandb)
        auto_resume = True
    opts = RunOptions(stage=args.stage, auto_resume=auto_resume, device=args.device, config_path=args.config)
    wandb_run = None
    try:
        wandb_run = start_wandb(cfg, cfg.checkpoint_dir, run_id=run_id,
                                resume=args.resume_mode if run_id else "allow")
        opts.wandb_run = wandb_run
        run_pipeline(cfg, opts)
    finally:
        if wandb_run is not None:
            wandb_run.finish()
    return 0
