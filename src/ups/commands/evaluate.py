"""`scripts/evaluate.py` / `ups eval`: score checkpoint files without training."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ups.commands.common import run_main
from ups.config import load_config

EXAMPLES = """examples:
  python scripts/evaluate.py --operator checkpoints/quickstart/operator_ema.pt \\
      --diffusion checkpoints/quickstart/diffusion_residual_ema.pt \\
      --config configs/quickstart.yaml --device cpu --output-prefix reports/quickstart_eval
  ups eval --operator checkpoints/operator_ema.pt --config configs/train_burgers_32dim.yaml \\
      --set eval.max_samples=64 --set eval.rollout_steps=20

Scores, in physical space on the eval split (eval.split, else data.split, else test):
persistence, the operator, and the operator + diffusion correction (with --diffusion);
one-step and rollout nRMSE = ||pred - true||_2 / ||true||_2 per sample (PDEBench), averaged.
The later stages' files beside the operator file are measured too: ensembles of sampled
rollouts (eval.ensemble_size, 0 skips) scored by CRPS and spread/skill, the consistency
student's cost against its teacher, the steady prior against held-out long-time states.
Writes PREFIX.json (every number), PREFIX.csv, PREFIX.html and its PNG plots beside it.

exit codes: 0 done, 2 bad config / data / checkpoint (e.g. "Architecture mismatch ...")."""


def build_parser(prog: str = "evaluate.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Evaluate an operator checkpoint (and optionally its diffusion correction).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--operator", required=True, metavar="PATH", help="operator output file, e.g. operator_ema.pt")
    p.add_argument("--diffusion", metavar="PATH",
                   help="diffusion_residual_ema.pt (or consistency_student_ema.pt): adds the corrected method")
    p.add_argument("--config", required=True, help="YAML config the checkpoints were trained with")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: training.device)")
    p.add_argument("--output-prefix", metavar="PREFIX", help="where the reports go (default: eval.output_prefix)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set eval.max_samples=32 (repeatable)")
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "evaluate.py") -> int:
    args = build_parser(prog).parse_args(argv)
    cfg = load_config(args.config, args.overrides)  # a bad config fails before torch is imported
    from ups.eval.run import evaluate_checkpoints, key_numbers  # imports torch: after --help
    ev = evaluate_checkpoints(cfg, args.operator, args.diffusion, device=args.device,
                              output_prefix=args.output_prefix)
    print("\n".join(key_numbers(ev)), flush=True)
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> None:
    sys.exit(run_main(main, argv))
