"""`scripts/download_data.py` / `ups data`: put the Burgers data in place — fetch a file
(verified, atomic) or generate the splits. Thin over `ups.data.download`."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ups.commands.common import run_main
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
  ups data --dataset burgers --split train \\
      --url {_KNOWN.url} --md5 {_KNOWN.md5} \\
      --output data/pdebench/{_KNOWN.filename}

Without --url and --generate: generate when the config's data.generate is true,
otherwise fetch the known PDEBench source for the dataset.

exit codes: 0 done, 2 bad arguments / failed or unverified download, 130 interrupted.
"""


def build_parser(prog: str = "download_data.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Put the Burgers data in place: fetch a file (verified, atomic) or generate the splits.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
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
    return p


def main(argv: Optional[Sequence[str]] = None, prog: str = "download_data.py") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        checksum = None
        if args.sha256 or args.md5:
            checksum = Checksum("sha256", args.sha256) if args.sha256 else Checksum("md5", args.md5)
        cfg = load_config(args.config) if args.config else Config()
        download_dataset(
            cfg, args.dataset, args.split, url=args.url, checksum=checksum, output=args.output,
            generate=args.generate, force=args.force,
        )
    except UpsError as e:  # every data problem is a usage-level failure (exit 2), whatever its class
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; no partial file was left in place", file=sys.stderr)
        return 130
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> None:
    sys.exit(run_main(main, argv))
