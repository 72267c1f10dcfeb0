#!/usr/bin/env python
"""Rent a Vast.ai GPU, train there with auto-resume, and recover when it is lost.

Thin entry point over `ups.launch` (subcommands: search, launch, status, logs, stop,
destroy, watch; `--help` on each). `generate_onstart_script` is re-exported here
because the spec imports it from this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import ups  # noqa: F401  (installed, e.g. `pip install -e '.[launch]'`)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ups.commands.common import run_main  # noqa: E402
from ups.launch.cli import build_parser, main  # noqa: E402
from ups.launch.onstart import generate_onstart_script  # noqa: E402

__all__ = ["build_parser", "generate_onstart_script", "main"]

if __name__ == "__main__":
    sys.exit(run_main(main))
