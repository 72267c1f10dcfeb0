#!/usr/bin/env python
"""Put the Burgers data in place: fetch a file (verified, atomic) or generate the splits.

Thin entry point over `ups.data.download`; every user-fixable problem is one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import ups  # noqa: F401  (installed, e.g. `pip install -e .`)
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ups.config import SPLITS, Config, load_config
from ups.data.download import KNOWN_SOURCES, Checksum, download_dataset
from ups.errors import EXIT_USAGE, UpsError

_KNOWN = KNOWN_SOURCES["burgers"]
EPILOG = f"""\
examples:
  # generate all three splits of the built-in data set (what the default config does)
  python scripts/download_data.py --dataset burgers --split all --generate

  # fetch one file and verify it; it lands at the config's data path for that split
  python scripts/download_data.py --dataset burgers --split train \\
      --url https://example.org/burgers_train.h5 --sha256 <64 hex digits>

  # fetch the official PDEBench file (nu=0.001, ~7.7 GB) to a chosen path, md5-verified
  python scripts/download_data.py --dataset burgers --split train \\
      --url {_KNOWN.url} --md5 {_KNOWN.md5} \\
      --output data/pdebench/{_KNOWN.filename}

Without --url and --generate: generate when the config's data.generate is true,
otherwise fetch the known PDEBench source for the dataset.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True, choices=sorted(KNOWN_SOURCES), help="which data set")
    p.add_argument("--split", default="all", choices=[*SPLITS, "all"], help="split to put in place (default: all)")
    p.add_argument("--config", help="YAML config whose data.* section gives paths (default: built-in defaults)")
    p.add_argument("--url", help="fetch from this URL or fsspec URI (https://, http://, file://, s3://, ...)")
    sums = p.add_mutually_exclusive_group()
    sums.add_argument("--sha256", metavar="HEX", help="expected sha256 of the fetched file")
    sums.add_argument("--md5", metavar="HEX", help="expected md5 of the fetched file")
    p.add_argument("--output", metavar="PATH", help="destination file (default: the config's path for --split)")
    p.add_argument("--generate", action="store_true", help="generate the split(s) with the built-in solver")
    p.add_argument("--force", action="store_true", help="fetch or generate even if a valid file is already there")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        checksum = None
        if args.sha256 or args.md5:
            checksum = Checksum("sha256", args.sha256) if args.sha256 else Checksum("md5", args.md5)
        cfg = load_config(args.config) if args.config else Config()
        download_dataset(
            cfg, args.dataset, args.split, url=args.url, checksum=checksum, output=args.output,
            generate=args.generate, force=args.force,
        )
    except UpsError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; no partial file was left in place", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
