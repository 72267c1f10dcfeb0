#!/usr/bin/env python3
"""Train the ups pipeline: `python scripts/train.py --config configs/quickstart.yaml --stage all [--auto-resume]`."""

from ups.commands.train import cli

if __name__ == "__main__":
    cli()
