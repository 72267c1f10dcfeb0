"""`scripts/train.py` / `ups train`: train the pipeline, resuming where it stopped."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ups.commands.common import run_main
from ups.config import load_config
from ups.resume.layout import STAGE_NAMES

EXAMPLES = """examples:
  python scripts/train.py --config configs/quickstart.yaml --stage all
  python scripts/train.py --config configs/quickstart.yaml --stage all --auto-resume
  python scripts/train.py --config configs/train_burgers_32dim.yaml --stage operator --set stages.operator.epochs=3
  python scripts/train.py --config configs/train_burgers_32dim.yaml --resume-from-wandb abc123 --resume-mode must
  torchrun --standalone --nproc-per-node 8 scripts/train.py --config configs/train_burgers_32dim.yaml --auto-resume

exit codes: 0 done, 1 the run failed (a non-finite loss, out of memory, disk full), 2 bad
            config/data/checkpoint/directory, 3 checkpoint_dir locked by another trainer,
            143/130 stopped by SIGTERM/SIGINT after saving (rerun with --auto-resume).
Every failure is one `error:` line; --debug (or UPS_DEBUG=1) adds the traceback."""


def build_parser(prog: str = "train.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train the four-stage latent PDE surrogate. Progress is saved every "
        "checkpoint.every_steps / every_seconds; --auto-resume continues any interrupted run.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("--stage", default="all", choices=("all",) + STAGE_NAMES,
                   help="which stage to train (default: all, in order)")
    p.add_argument("--auto-resume", action="store_true",
                   help="skip completed stages whose outputs verify, continue interrupted ones from their "
                        "last saved step, rerun stale ones (a plan is printed first)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: training.device, 'auto' = cuda if available)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set stages.operator.epochs=3 (repeatable)")
    p.add_argument("--resume-from-wandb", metavar="RUN_ID",
                   help="download the checkpoints of this W&B run, continue the same run, then auto-resume")
    p.add_argument("--resume-mode", choices=("allow", "must", "never"), default="allow",
                   help="when the source of --resume-from-wandb / --resume-from holds nothing: allow (default) "
                        "start from scratch, must: fail; never: start a new W&B run. A source that cannot be "
                        "asked (auth, 403, 429, 5xx, timeout) is an error under every mode")
    p.add_argument("--resume-from", metavar="URI",
                   help="download a checkpoint directory from a remote store (file://, s3://, gs://, ...) "
                        "then auto-resume")
    p.add_argument("--checkpoint-remote", metavar="URI",
                   help="keep a verified copy of progress at this fsspec URI (overrides checkpoint.remote)")
    p.add_argument("--take-over-remote", action="store_true",
                   help="let --checkpoint-remote replace a different run found there (refused otherwise)")
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "train.py") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = load_config(args.config, args.overrides)  # a bad config fails before torch is imported
    from ups.job import train_from_args  # imports torch: after --help
    return train_from_args(cfg, args)


def cli(argv: Optional[Sequence[str]] = None) -> None:
    sys.exit(run_main(main, argv))
