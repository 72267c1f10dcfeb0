"""`python -m bench.pdebench_fno` runs end to end on a tiny file and prints the ratio it measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytest.importorskip("neuralop", reason="the FNO reference needs the bench extra: pip install -e '.[bench]'")

TINY = ["data.generator.nx=64", "data.generator.nt=61", "data.generator.t_end=0.6", "data.generator.n_test=4",
        "data.generator.n_val=2", "data.generator.n_train=8", "data.generator.viscosity=0.1",
        "data.space_stride=2", "data.time_stride=2", "latent.tokens=8", "stages.operator.epochs=1",
        "training.batch_size=32", "eval.protocol.given=3", "eval.protocol.predicted=8"]


def test_fno_bench_trains_both_at_one_budget_and_prints_the_ratio(tmp_path):
    sets = [a for s in TINY + [f"data.root={tmp_path / 'data'}"] for a in ("--set", s)]
    proc = subprocess.run([sys.executable, "-m", "bench.pdebench_fno", *sets, "--work", str(tmp_path / "work"),
                           "--out", str(tmp_path / "fno.json")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ups / FNO rollout nRMSE:" in proc.stdout
    got = json.loads((tmp_path / "fno.json").read_text())
    methods = got["protocol"]["methods"]
    assert {"operator", "fno", "zero", "heat"} <= set(methods)
    assert got["ratio_mean"] == pytest.approx(methods["operator"]["mean"] / methods["fno"]["mean"])
    assert got["fno"]["batches"] >= 1 and got["fno"]["seconds"] >= got["budget_seconds"]
