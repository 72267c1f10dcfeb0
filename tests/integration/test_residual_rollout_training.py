"""The diffusion residual learned along the operator's own rollouts
(`diffusion.train_rollout_steps`) resumes bit-identically after a kill, and the
consistency student distils it on the same rolled-out residuals."""

from __future__ import annotations

import signal

import torch

from tests.helpers import checkpoint_dir, output_weights, train, write_config

ROLLED = {"diffusion": {"train_rollout_steps": 3}}


def test_a_residual_trained_along_rollouts_resumes_bit_identically_and_distils(tmp_path):
    data = tmp_path / "data"
    reference = write_config(tmp_path / "ref", extra=ROLLED, data_root=data)
    killed = write_config(tmp_path / "killed", extra=ROLLED, data_root=data)
    for config in (reference, killed):
        train(config, "--stage", "operator", check=True)
    train(reference, "--stage", "diff_residual", check=True)
    crash = train(killed, "--stage", "diff_residual", env={"UPS_FAULT": "after-step:diff_residual:10"})
    assert crash.returncode == -signal.SIGKILL, crash.stdout[-2000:]
    resumed = train(killed, "--stage", "diff_residual", "--auto-resume", check=True)
    assert "continue" in resumed.stdout
    a, b = output_weights(checkpoint_dir(reference)), output_weights(checkpoint_dir(killed))
    assert "diffusion_residual_ema.pt" in a and sorted(a) == sorted(b)
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}:{key} differs"
    scale = {torch.load(checkpoint_dir(c) / "diffusion_residual_ema.pt", weights_only=True)["extra"]["residual_scale"]
             for c in (reference, killed)}
    assert len(scale) == 1

    train(killed, "--stage", "consistency_distill", check=True)
    assert (checkpoint_dir(killed) / "consistency_student_ema.pt").is_file()


LEAD = {"diffusion": {"train_rollout_steps": 5, "lead_time": True}, "eval": {"rollout_steps": 5, "ensemble_size": 3}}


def test_a_lead_time_residual_and_its_student_are_scored_on_the_operators_own_rollout(tmp_path):
    import json
    import subprocess
    import sys

    from tests.helpers import REPO

    config = write_config(tmp_path / "run", extra={**LEAD, "eval": {**LEAD["eval"],
                                                                   "output_prefix": str(tmp_path / "rep")}})
    train(config, "--stage", "all", check=True)
    ckpt = checkpoint_dir(config)
    teacher = torch.load(ckpt / "diffusion_residual_ema.pt", weights_only=True)
    assert len(teacher["extra"]["residual_scale"]) == 5, "one factor per rollout step"
    assert teacher["architecture"]["lead_steps"] == 5 and "lead_emb" in teacher["state_dict"]

    def evaluate(*extra):
        return subprocess.run([sys.executable, "scripts/evaluate.py", "--config", str(config), "--operator",
                               str(ckpt / "operator_ema.pt"), "--diffusion", str(ckpt / "diffusion_residual_ema.pt"),
                               "--device", "cpu", "--output-prefix", str(tmp_path / "rep"), *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=300)

    proc = evaluate()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "rep.json").read_text())
    ens = report["ensemble"]["methods"]
    assert {"operator", "diff_residual", "consistency_distill"} <= set(ens)
    for name in ("diff_residual", "consistency_distill"):
        assert ens[name]["spread_skill"] > 0 and ens[name]["crps"] > 0
    assert report["rollout_steps"] == 5

    longer = evaluate("--set", "eval.rollout_steps=6")
    assert longer.returncode == 2, longer.stdout[-2000:] + longer.stderr[-2000:]
    assert "error at each of 5 rollout steps" in longer.stderr and "Traceback" not in longer.stderr
