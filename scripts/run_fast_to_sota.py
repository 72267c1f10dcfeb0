#!/usr/bin/env python3
"""Validate, check data, train, evaluate: `python scripts/run_fast_to_sota.py --train-config C [...]`."""

from ups.commands.orchestrate import cli

if __name__ == "__main__":
    cli()
