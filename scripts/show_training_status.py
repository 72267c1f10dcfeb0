#!/usr/bin/env python3
"""Show where a run stands: `python scripts/show_training_status.py CKPT_DIR [--json] [--rebuild]`."""

from ups.commands.status import cli

if __name__ == "__main__":
    cli()
