#!/usr/bin/env python3
"""Put the Burgers data in place: `python scripts/download_data.py --dataset burgers --split all --generate`."""

from ups.commands.data import cli

if __name__ == "__main__":
    cli()
