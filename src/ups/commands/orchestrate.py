"""`scripts/run_fast_to_sota.py` / `ups run`: validate → data → train → small eval → full eval."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Optional, Sequence

from ups.commands.common import run_main
from ups.errors import ConfigError

EXAMPLES = """examples:
  python scripts/run_fast_to_sota.py --train-config configs/quickstart.yaml \\
      --small-eval-config configs/small_eval.yaml --full-eval-config configs/full_eval.yaml
  # evaluation only (the checkpoints of the config's checkpoint_dir):
  ups run --train-config configs/train_burgers_32dim.yaml --skip-training --skip-full-eval
  # pass options through to scripts/train.py (use '=' for values that start with '-'):
  ups run --train-config configs/quickstart.yaml --train-extra-arg=--device=cpu \\
      --train-extra-arg="--set stages.operator.epochs=3"

Training runs with --auto-resume, so rerunning after a crash continues it; a training already
finished for the same config hash, its outputs verified, is skipped ("Skipping training")
unless --force-train (which retrains every stage from scratch). Eval configs are overlays
merged over the training config (e.g. only an `eval:` section); without one, an eval uses
the training config's own `eval:` section. Results go to metadata.json
(last_small_eval / last_full_eval with metric:nrmse, and their times).

exit codes: 0 done, 2 bad config / data / checkpoint, else the code training exited with
(143/130: stopped by a signal after saving; rerun to continue)."""


def build_parser(prog: str = "run_fast_to_sota.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Drive the whole pipeline: validate config, check data, train, small and full eval.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--train-config", required=True, help="training YAML config (its checkpoint_dir is used)")
    p.add_argument("--skip-validation", action="store_true", help="skip the up-front config checks")
    p.add_argument("--skip-data-check", action="store_true", help="do not check/generate the data splits first")
    p.add_argument("--skip-training", action="store_true", help="evaluate the checkpoints already there")
    p.add_argument("--force-train", action="store_true",
                   help="retrain every stage from scratch even if already trained for this config")
    p.add_argument("--train-extra-arg", dest="train_extra", action="append", default=[], metavar="ARG",
                   help="argument(s) passed through to scripts/train.py (repeatable; split like a shell)")
    p.add_argument("--small-eval-config", metavar="YAML", help="overlay for the small eval (default: none)")
    p.add_argument("--full-eval-config", metavar="YAML", help="overlay for the full eval (default: none)")
    p.add_argument("--skip-small-eval", action="store_true", help="skip the small eval")
    p.add_argument("--skip-full-eval", action="store_true", help="skip the full eval")
    p.add_argument("--device", help="device for the evaluations (default: training.device)")
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "run_fast_to_sota.py") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        args.extra = [part for value in args.train_extra for part in shlex.split(value)]
    except ValueError as e:  # an unbalanced quote
        raise ConfigError(f"--train-extra-arg {args.train_extra!r}: {e}; quote each value once, "
                          "e.g. --train-extra-arg=\"--set stages.operator.epochs=3\"") from e
    from ups.pipeline.orchestrate import run_fast_to_sota

    return run_fast_to_sota(args)


def cli(argv: Optional[Sequence[str]] = None) -> None:
    sys.exit(run_main(main, argv))
