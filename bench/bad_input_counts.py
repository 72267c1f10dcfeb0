"""Count how the bad-input catalogue ends against a checkout: clear errors, tracebacks, wrong
exits, unclear messages, files changed — per class of case.

    python bench/bad_input_counts.py                 # this checkout
    python bench/bad_input_counts.py --repo /tmp/old # another one, e.g. `git archive <commit> | tar -x -C /tmp/old`

The cases and their expectations are `tests/integration/bad_input_cases.py` (of this checkout);
only the code under test comes from --repo. Prints a table and, with --json, one line per case.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE))

from tests.helpers import write_config  # noqa: E402
from tests.integration.bad_input_cases import CASES, Ctx, classify, error_lines, release_holders, run_case  # noqa: E402

CLASSES = ("clear", "unclear", "traceback", "wrong_exit", "files_changed")


def reference_run(root: Path, repo: Path) -> tuple[Path, Path]:
    data = root / "data"
    config = write_config(root / "ref", data_root=data)
    env_path = f"{repo / 'src'}:{repo}"
    subprocess.run([sys.executable, str(repo / "scripts" / "train.py"), "--config", str(config), "--stage", "all"],
                   check=True, capture_output=True, env={"PYTHONPATH": env_path, "OMP_NUM_THREADS": "1",
                                                         "PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled"})
    return root / "ref" / "checkpoints", data


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, default=HERE, help="checkout whose scripts/ and src/ are run")
    p.add_argument("--json", action="store_true", help="also print each case's outcome")
    p.add_argument("-k", default="", help="only cases whose id contains this")
    args = p.parse_args()
    repo = args.repo.resolve()
    counts: dict[str, Counter] = defaultdict(Counter)
    with tempfile.TemporaryDirectory(prefix="bad-input-") as tmp:
        ref, data = reference_run(Path(tmp), repo)
        for case in [c for c in CASES if args.k in c.id]:
            ctx = Ctx(Path(tmp) / case.id, data, ref)
            ctx.root.mkdir()
            try:
                outcome = run_case(case, ctx, repo)
            finally:
                release_holders()
            verdict = classify(case, outcome)
            counts[case.kind][verdict] += 1
            if args.json:
                last = (error_lines(outcome) or [""])[-1][:200]
                print(json.dumps({"case": case.id, "kind": case.kind, "verdict": verdict, "exit": outcome.exit_code,
                                  "expected": case.exit_code, "changed": outcome.changed[:5], "last_line": last}),
                      flush=True)
            shutil.rmtree(ctx.root, ignore_errors=True)
    print(f"\n{'class':<16}" + "".join(f"{c:>15}" for c in CLASSES) + f"{'cases':>8}")
    for kind in sorted(counts):
        row = counts[kind]
        print(f"{kind:<16}" + "".join(f"{row[c]:>15}" for c in CLASSES) + f"{sum(row.values()):>8}")
    total = sum(counts.values(), Counter())
    print(f"{'all':<16}" + "".join(f"{total[c]:>15}" for c in CLASSES) + f"{sum(total.values()):>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
