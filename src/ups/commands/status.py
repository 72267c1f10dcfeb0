"""`scripts/show_training_status.py` / `ups status`: where a run stands, or rebuild its status file."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from ups.commands.common import run_main

EXAMPLES = """examples:
  python scripts/show_training_status.py checkpoints/
  ups status checkpoints/quickstart --json
  ups status s3://my-bucket/run1            # the remote copy training keeps (any fsspec URI)
  ups status file:///data/runs/run1 --verify size
  ups status checkpoints/ --rebuild         # status file lost or corrupt: rebuild it from the files

Shows each stage (status, checkpoint, completion time; for an unfinished stage its step/epoch
of the total and the time since its last save), the pipeline facts of metadata.json (training,
small/full evaluation nRMSE), the W&B run, and each output file with its size and whether it
still matches the sha256 recorded when its stage completed.

exit codes: 0 shown, 2 no such directory / status file missing or corrupt (the message says
how to fix it), 3 --rebuild while a trainer holds the directory."""


def build_parser(prog: str = "show_training_status.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Show the training status of a checkpoint directory (local path or fsspec URI).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint_dir", help="checkpoint directory: a path, file:///..., s3://..., gs://...")
    p.add_argument("--json", action="store_true", help="print the same facts as one JSON object")
    p.add_argument("--verify", choices=("sha256", "size", "none"), default="sha256",
                   help="how to check outputs against their recorded digests: sha256 (default; reads every "
                        "output, over the network for a remote URI), size only, or none")
    p.add_argument("--rebuild", action="store_true",
                   help="rebuild stage_status.json from the outputs and resumable states present (local "
                        "directories only); the old file is kept beside it")
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "show_training_status.py") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.rebuild:
        return _rebuild(args)
    from ups.status.dashboard import gather
    from ups.status.text import render

    facts = gather(args.checkpoint_dir, verify=args.verify)
    print(json.dumps(facts, indent=2) if args.json else render(facts), flush=True)
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    from ups.errors import CheckpointError
    from ups.status.rundir import RunDir
    from ups.resume.rebuild import rebuild_status

    loc = RunDir(args.checkpoint_dir)
    if not loc.is_local:
        raise CheckpointError(f"--rebuild works on a local directory; download {args.checkpoint_dir} first")
    report = rebuild_status(loc.local_path)
    print("\n".join(report.lines()), flush=True)
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> None:
    sys.exit(run_main(main, argv))
