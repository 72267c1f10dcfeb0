"""`python -m bench [--quick] [--only KEYS] [--out DIR]`: run the measurements, write the report.

The resume rows run early: their per-save cost feeds row 1's diagnosis (the
goodput rows measure their own save and restart costs). The table's rows are always in one fixed order. A full run writes bench/RESULTS.md and
bench/results.json; a --quick run (the smoke test) writes into its scratch
directory unless --out is given, so it never overwrites the committed results.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench import goodput, lost_work, overhead, restart_cost, resume_latency, save_cost
from bench.common import PYTHON, QUICKSTART, REPO, Bench, check_rc, run_timed
from bench.report import Row, write_results

# key -> module, in table order. RUN_ORDER: resume measures the per-save cost overhead's diagnosis uses.
MODULES = {"overhead": overhead, "save": save_cost, "resume": resume_latency, "lost": lost_work,
           "goodput": goodput, "restart": restart_cost}
RUN_ORDER = ("save", "resume", "overhead", "lost", "goodput", "restart")
# Optional repetitions start only if they can end by then.
DEADLINE_S = 13 * 60


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repetition: proves the harness works")
    p.add_argument("--only", default=",".join(MODULES), help=f"comma-separated subset of {', '.join(MODULES)}")
    p.add_argument("--out", type=Path, help="where RESULTS.md and results.json go (default: bench/, or the "
                                            "scratch directory with --quick)")
    p.add_argument("--work", type=Path, help="scratch directory (default: a new temp dir, removed after a "
                                             "successful run)")
    args = p.parse_args(argv)
    args.only = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = sorted(set(args.only) - set(MODULES))
    if unknown:
        p.error(f"unknown --only key(s) {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    return args


def prepare_data(b: Bench) -> None:
    """Generate the data set before anything is timed (a no-op when it is there)."""
    from ups.config_yaml import apply_overrides

    import yaml

    raw = apply_overrides(yaml.safe_load((REPO / QUICKSTART).read_text()), list(b.data_sets))
    config = b.work / "data.yaml"
    config.write_text(yaml.safe_dump(raw))
    log = b.work / "data.log"
    _, rc = run_timed([PYTHON, "scripts/download_data.py", "--dataset", "burgers", "--split", "all", "--generate",
                       "--config", str(config)], log)
    check_rc(rc, 0, "data generation", log)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    import torch

    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, Python {platform.python_version()}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run(args: argparse.Namespace, work: Path) -> Path:
    started = time.perf_counter()
    load_before = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    b = Bench(work=work, quick=args.quick, log=lambda m: print(m, flush=True),
              deadline=started + DEADLINE_S)
    print(f"[bench] scratch directory {work}; preparing data", flush=True)
    prepare_data(b)
    rows: dict[str, list[Row]] = {}
    for key in (k for k in RUN_ORDER if k in args.only):
        t0 = time.perf_counter()
        print(f"[bench] {key}: {MODULES[key].__doc__.splitlines()[0]}", flush=True)
        rows[key] = MODULES[key].measure(b)
        for r in rows[key]:
            print(f"[bench]   {r.metric}: ratio {r.ratio:.3f} (target {r.op} {r.target}) "
                  f"[{time.perf_counter() - t0:.0f} s; {time.perf_counter() - started:.0f} s in all]", flush=True)
    ordered = [r for key in MODULES if key in rows for r in rows[key]]
    flags = " --quick" if args.quick else ""
    only = "" if set(args.only) == set(MODULES) else f" --only {','.join(args.only)}"
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = {"command": f"python -m bench{flags}{only}", "date": date,
            "machine": machine(), "commit": git_commit(), "quick": args.quick, "load_before": load_before,
            "load_after": ", ".join(f"{x:.1f}" for x in os.getloadavg()), "seconds": time.perf_counter() - started}
    out = args.out or (work if args.quick else REPO / "bench")
    diagnostics = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in b.diagnostics.items()}
    path = write_results(out, ordered, meta, diagnostics)
    print(f"[bench] wrote {path} ({meta['seconds']:.0f} s)", flush=True)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="ups-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    path = run(args, work)  # on failure the scratch directory stays, with every run's log
    print(path.read_text(encoding="utf-8"))
    if args.work is None and not args.quick:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
