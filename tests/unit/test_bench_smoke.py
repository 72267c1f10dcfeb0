"""The benchmark harness runs and writes its table; its timings are not tested here.

`python -m bench --quick --only save,lost` exercises the in-process save rows and a
real subprocess chain (SIGKILL and SIGTERM of the trainer) in well under 30 s. The
remaining rows drive the same helpers; `python -m bench --quick` runs them all in
about a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.report import Row, markdown
from tests.helpers import REPO

COLUMNS = "| # | metric | measured | reference | ratio | target | met? | reproduce |"


def test_quick_bench_writes_the_table_and_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "save,lost", "--work", str(tmp_path / "work"),
         "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "out" / "RESULTS.md").read_text()
    assert COLUMNS in table
    for metric in ("Blocking per save", "Save throughput", "Lost work after SIGKILL", "Lost work after SIGTERM"):
        assert metric in table
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert [r["key"] for r in rows] == ["save", "save", "lost", "lost"]
    assert all(r["ratio"] >= 0 and r["commands"] for r in rows)
    assert next(r for r in rows if r["metric"].startswith("Lost work after SIGTERM"))["met"] is True


def test_a_missed_target_is_listed_with_its_reason():
    rows = [
        Row(key="a", metric="fast thing", measured=1.0, reference=2.0, unit="s", ratio=0.5, op="<=", target=1.0),
        Row(key="b", metric="slow thing", measured=3.0, reference=1.0, unit="s", ratio=3.0, op="<=", target=1.0,
            miss="it hashes twice; next: hash once"),
    ]
    meta = {"command": "python -m bench", "date": "today", "machine": "test", "load_before": "0",
            "load_after": "0", "seconds": 1.0}
    text = markdown(rows, meta, {})
    missed = text.split("## Targets not met")[1].split("##")[0]
    assert "slow thing" in missed and "It hashes twice; next: hash once" in missed
    assert "fast thing" not in missed
