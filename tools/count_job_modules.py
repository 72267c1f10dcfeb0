"""Count the `ups.*` modules the main job imports: `train --stage all --auto-resume` on a tiny config.

A figure for reading cost: how many of the project's modules a newcomer has to
know to follow the main job. Runs the job in-process on a generated tiny
config in a temporary directory and prints the count (and, with -v, the names).

    python tools/count_job_modules.py [-v]
"""

from __future__ import annotations

import os
import runpy
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(REPO))
    from tests.helpers import write_config  # the tiny config every pipeline test uses

    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp))
        sys.argv = ["train.py", "--config", str(config), "--stage", "all", "--auto-resume"]
        before = {m for m in sys.modules if m == "ups" or m.startswith("ups.")}
        try:
            runpy.run_path(str(REPO / "scripts" / "train.py"), run_name="__main__")
        except SystemExit as e:
            if e.code not in (0, None):
                print(f"the job exited {e.code}", file=sys.stderr)
                return 1
    names = sorted(m for m in sys.modules if (m == "ups" or m.startswith("ups.")) and m not in before)
    names = [m for m in names if m != "ups"]
    if "-v" in sys.argv[1:] or "-v" in sys.orig_argv:
        print("\n".join(names), file=sys.stderr)
    print(f"ups modules imported by the main job: {len(names)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
