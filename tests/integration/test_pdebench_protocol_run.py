"""The PDEBench protocol end to end on a tiny scale: an operator trained through rollouts
resumes bit-identically after a kill, and `evaluate.py` prints and writes the protocol
scores beside the free baselines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import torch

from tests.helpers import REPO, checkpoint_dir, output_weights, train, write_config

PROTOCOL = {
    "data": {"generator": {"protocol": "pdebench", "nx": 64, "nt": 41, "t_end": 0.4, "viscosity": 0.1,
                           "n_test": 6, "n_val": 4, "n_train": 12, "seed": 3},
             "space_stride": 2, "time_stride": 2},
    "operator": {"train_rollout_steps": 3},
    "stages": {"operator": {"epochs": 2}},
    "eval": {"protocol": {"given": 4, "predicted": 10, "max_samples": 5}},
}


def config_in(path, data_root, **extra):
    cfg = {**PROTOCOL, "eval": {**PROTOCOL["eval"], "output_prefix": str(path / "reports" / "eval")}}
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return write_config(path, extra=cfg, data_root=data_root)


def test_rollout_trained_operator_resumes_bit_identically_after_a_kill(tmp_path):
    data = tmp_path / "data"
    reference = config_in(tmp_path / "ref", data)
    train(reference, "--stage", "operator", check=True)
    config = config_in(tmp_path / "killed", data)
    killed = train(config, "--stage", "operator", env={"UPS_FAULT": "after-step:operator:5"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:]
    resumed = train(config, "--stage", "operator", "--auto-resume", check=True)
    assert "continue" in resumed.stdout
    a, b = output_weights(checkpoint_dir(reference)), output_weights(checkpoint_dir(config))
    assert sorted(a) == sorted(b) == ["operator.pt", "operator_ema.pt"]
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}:{key} differs"

    report = tmp_path / "reports" / "pdebench"
    proc = subprocess.run([sys.executable, "scripts/evaluate.py", "--config", str(config), "--operator",
                           str(checkpoint_dir(config) / "operator_ema.pt"), "--output-prefix", str(report)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "4 given frames, 10 predicted autoregressively" in proc.stdout
    assert "operator vs the best free baseline (" in proc.stdout
    got = json.loads(report.with_suffix(".json").read_text())
    methods = got["protocol"]["methods"]
    assert set(methods) == {"operator", "zero", "mean", "heat", "persistence"}
    assert got["protocol"]["samples"] == 5 and len(methods["operator"]["per_sample"]) == 5
    assert methods["zero"]["mean"] == 1.0 and methods["zero"]["median"] == 1.0
    assert got["summary"]["metric:protocol_nrmse_operator"] == methods["operator"]["mean"]
