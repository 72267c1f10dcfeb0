"""`python -m bench.residual_spread` on a tiny trained run: both measurements, as text and JSON."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO, checkpoint_dir, train, write_config


def test_the_spread_bench_measures_one_step_and_inflated_rollouts_of_a_trained_run(tmp_path):
    config = write_config(tmp_path / "run")
    train(config, "--stage", "operator", check=True)
    train(config, "--stage", "diff_residual", check=True)
    residual = checkpoint_dir(config) / "diffusion_residual_ema.pt"
    before = residual.read_bytes()
    out = tmp_path / "spread.json"
    proc = subprocess.run([sys.executable, "-m", "bench.residual_spread", "--config", str(config),
                           "--checkpoints", str(checkpoint_dir(config)), "--inflation", "1,4",
                           "--rollout-steps", "1,3", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "one step from true states: drawn residual RMS" in proc.stdout
    got = json.loads(out.read_text())
    assert list(got["rollout"]) == ["operator", "1", "4"]
    assert got["rollout"]["operator"]["spread_skill"] is None, "one member has no spread"
    one = got["one_step"]
    assert one["true_residual_rms"] > 0 and one["drawn_residual_rms"] > 0 and one["spread_skill"] > 0
    # Four times the drawn residuals spread the members wider: the factor reaches the draws.
    assert got["rollout"]["4"]["spread_skill"] > got["rollout"]["1"]["spread_skill"] > 0
    # Retrained along rollouts in a copy: K = 1 is the run's own residual again, K = 3 another one,
    # and the run's own file is left as it was.
    sweep = got["rollout_training"]
    assert list(sweep) == ["1", "3"] and "trained along K-step rollouts" in proc.stdout
    assert sweep["1"]["rollout"]["1"] == got["rollout"]["1"] and sweep["1"]["one_step"] == one
    assert sweep["3"]["one_step"]["drawn_residual_rms"] != one["drawn_residual_rms"]
    assert residual.read_bytes() == before


def test_the_spread_bench_refuses_a_run_without_the_residual_stage(tmp_path):
    config = write_config(tmp_path / "run")
    train(config, "--stage", "operator", check=True)
    proc = subprocess.run([sys.executable, "-m", "bench.residual_spread", "--config", str(config)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "train the diff_residual stage first" in proc.stderr
    assert "Traceback" not in proc.stderr
