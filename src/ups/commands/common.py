"""What every command shares: any exception at the top becomes one line and an exit code.

The mapping itself is `ups.errors.error_line`. `--debug` (anywhere before a `--`) or
UPS_DEBUG=1 prints the traceback first; it is taken out of the arguments here, so
every command accepts it without declaring it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from typing import Callable, Optional, Sequence

from ups.errors import DEBUG_ENV, UsageError, error_line
from ups.resume.signals import TrainingInterrupted

DEBUG_FLAG = "--debug"
EXIT_SIGINT = 130


def split_debug(argv: Optional[Sequence[str]]) -> tuple[Optional[list[str]], bool]:
    """(argv without `--debug`, whether a traceback was asked for)."""
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    debug = DEBUG_FLAG in args[:cut]
    kept = [a for a in args[:cut] if a != DEBUG_FLAG] + args[cut:]
    env = os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
    return kept, debug or env


def run_main(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Call `main`; whatever escapes becomes `error: <one line>` on stderr and its exit code."""
    args, debug = split_debug(argv)
    try:
        with _one_line_usage_errors():
            return main(args)
    except SystemExit:
        raise  # argparse: its own usage line and exit 2, --help: 0
    except TrainingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        _traceback(debug)
        print("interrupted: stopped by Ctrl-C; rerun with --auto-resume to continue from the last saved state",
              file=sys.stderr, flush=True)
        return EXIT_SIGINT
    except BaseException as e:  # noqa: BLE001 - the one place every failure is turned into a line
        _traceback(debug)
        text, code = error_line(e)
        print(f"error: {text}", file=sys.stderr, flush=True)
        return code


@contextlib.contextmanager
def _one_line_usage_errors():
    """argparse prints its usage block and then the error; here the error alone is the one line."""
    original = argparse.ArgumentParser.error

    def error(parser: argparse.ArgumentParser, message: str):
        # Still argparse's contract (stderr, then SystemExit(2)), for callers that catch it.
        parser.exit(UsageError.exit_code, f"error: {parser.prog}: {message} (see {parser.prog} --help)\n")

    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original  # type: ignore[method-assign]


def _traceback(debug: bool) -> None:
    if debug:
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
