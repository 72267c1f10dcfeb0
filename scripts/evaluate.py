#!/usr/bin/env python3
"""Evaluate checkpoints: `python scripts/evaluate.py --operator PATH [--diffusion PATH] --config C --output-prefix P`."""

from ups.commands.evaluate import cli

if __name__ == "__main__":
    cli()
