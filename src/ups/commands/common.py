"""What every command shares: turning errors into one line and an exit code."""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

from ups.errors import UpsError
from ups.resume.signals import TrainingInterrupted


def run_main(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Call `main`; an UpsError becomes `error: <message>` on stderr and its exit code."""
    try:
        return main(argv)
    except TrainingInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except UpsError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
