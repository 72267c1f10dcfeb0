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
