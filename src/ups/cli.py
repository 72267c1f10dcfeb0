"""`ups`: one command for everything the scripts do — `ups train|status|eval|run|launch|data`.

Each subcommand runs the very `main` of its script (`scripts/train.py` is
`ups train`, and so on), so flags, help and exit codes never differ between the
two. Modules are imported only for the subcommand asked for: `ups status` does
not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from typing import Optional, Sequence

from ups.commands.common import run_main

# name -> (module with main(argv), script it mirrors, one-line summary)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("ups.commands.train", "scripts/train.py", "train the four stages, resuming where a run stopped"),
    "status": ("ups.commands.status", "scripts/show_training_status.py",
               "show where a run stands (local dir or fsspec URI); --rebuild a lost status file"),
    "eval": ("ups.commands.evaluate", "scripts/evaluate.py",
             "evaluate checkpoints: nRMSE vs persistence, JSON/CSV/HTML report"),
    "run": ("ups.commands.orchestrate", "scripts/run_fast_to_sota.py",
            "validate config, check data, train, small and full eval, in one command"),
    "launch": ("ups.launch.cli", "scripts/vast_launch.py", "rent a Vast.ai GPU, train there, recover when it is lost"),
    "data": ("ups.commands.data", "scripts/download_data.py", "fetch (verified) or generate the Burgers data"),
}

USAGE = """usage: ups <command> [options]        (ups <command> --help for its options and examples)

commands:
{table}

examples:
  ups train --config configs/quickstart.yaml --stage all --auto-resume
  ups status checkpoints/quickstart
  ups eval --operator checkpoints/quickstart/operator_ema.pt --config configs/quickstart.yaml
  ups run --train-config configs/quickstart.yaml --small-eval-config configs/small_eval.yaml
  ups launch launch --config configs/train_burgers_32dim.yaml --gpu-name RTX_4090 --dry-run
  ups data --dataset burgers --split all --generate

exit codes: 0 done, 1 the run failed, 2 bad input, 3 checkpoint_dir locked, 130/143 stopped by a signal.
Every failure is one `error:` line; add --debug (or set UPS_DEBUG=1) for the traceback.
"""


def usage() -> str:
    table = "\n".join(f"  {name:<8} {summary}  [{script}]" for name, (_, script, summary) in COMMANDS.items())
    return USAGE.format(table=table)


LAUNCH_EXAMPLES = """examples:
  ups launch search --gpu-name RTX_4090 --max-price 0.6
  ups launch launch --config configs/train_burgers_32dim.yaml --gpu-name RTX_4090 \\
      --checkpoint-remote s3://my-bucket/run1 --auto-shutdown --dry-run
  ups launch watch 1234567 --config configs/train_burgers_32dim.yaml --checkpoint-remote s3://my-bucket/run1
(ups launch COMMAND --help for each command's options)"""


def _print_help_with_examples(name: str) -> int:
    """Top-level help of a command whose parser has no examples of its own (the launcher's)."""
    parser = importlib.import_module(COMMANDS[name][0]).build_parser()
    if not parser.epilog:
        parser.epilog = LAUNCH_EXAMPLES
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.prog = f"ups {name}"
    parser.print_help()
    return 0


def _load(name: str):
    module_name = COMMANDS[name][0]
    try:
        return importlib.import_module(module_name).main
    except ImportError as e:
        if module_name.startswith("ups.launch"):
            print(f"error: ups launch is not available in this installation ({e}); "
                  "install the launcher with: pip install -e '.[launch]'", file=sys.stderr)
            return None
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"ups: unknown command {name!r}; choose one of {', '.join(COMMANDS)} (ups --help)", file=sys.stderr)
        return 2
    command = _load(name)
    if command is None:
        return 2
    if name == "launch" and rest in (["-h"], ["--help"]):
        return _print_help_with_examples(name)
    if "prog" in inspect.signature(command).parameters:
        return run_main(lambda a: command(a, prog=f"ups {name}"), rest)
    return run_main(command, rest)


if __name__ == "__main__":
    sys.exit(main())
