"""Interrupt the real pipeline at chosen points, resume with --auto-resume, and
require the final weights to be bit-identical to the uninterrupted reference."""

import json
import signal
import subprocess
import sys

import pytest

from tests.helpers import REPO, assert_bit_identical, checkpoint_dir, train, write_config


def status_of(config):
    return json.loads((checkpoint_dir(config) / "stage_status.json").read_text())


@pytest.mark.parametrize("fault", [
    "after-step:operator:7",                 # mid-epoch, between two saves
    "before-rename:step-000000008.pt",       # during a save: state written, not yet committed
    "before-rename:stage_status.json#9",     # during a status update (the 9th write)
    "after-outputs:diff_residual",           # outputs durable, completion not recorded
    "after-stage:operator",                  # between stages
    "after-step:steady_prior:9",             # mid-stage in the last stage
])
def test_sigkill_at_any_point_then_auto_resume_is_bit_identical(tmp_path, shared_data, reference_run, fault):
    config = write_config(tmp_path, data_root=shared_data)
    killed = train(config, "--stage", "all", env={"UPS_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:]
    completed_before = {s for s, e in status_of(config)["stages"].items() if e["status"] == "completed"}

    resumed = train(config, "--stage", "all", "--auto-resume", check=True)

    for stage in completed_before:
        assert f"{stage} " in resumed.stdout and "skip" in next(
            line for line in resumed.stdout.splitlines() if f"/4 {stage} " in line)
    assert_bit_identical(reference_run, checkpoint_dir(config))
    assert not list(checkpoint_dir(config).rglob(".tmp-*")), "a temp file survived the resume"


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_saves_records_and_exits_then_resume_loses_nothing(
        tmp_path, shared_data, reference_run, sig, code):
    config = write_config(tmp_path, data_root=shared_data)
    proc = subprocess.Popen([sys.executable, "scripts/train.py", "--config", str(config), "--stage", "all"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:
        if line.startswith("[diff_residual] train"):
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "state saved" in err and "--auto-resume" in err
    entry = status_of(config)["stages"]["diff_residual"]
    detail = status_of(config)["details"]["diff_residual"]
    assert entry["status"] == "in_progress" and detail["interrupted_at"]
    stopped_at = detail["step"]
    assert detail["resume_state"]["step"] == stopped_at  # the state was saved at the stop: nothing lost

    resumed = train(config, "--stage", "all", "--auto-resume", check=True)
    assert f"continuing from step {stopped_at}" in resumed.stdout
    assert_bit_identical(reference_run, checkpoint_dir(config))


def test_an_exception_marks_the_stage_failed_and_resume_continues_from_its_last_state(
        tmp_path, shared_data, reference_run):
    config = write_config(tmp_path, data_root=shared_data)
    failed = train(config, "--stage", "all", env={"UPS_FAULT": "raise:after-step:consistency_distill:10"})
    assert failed.returncode != 0
    assert "injected failure" in failed.stderr
    entry = status_of(config)["stages"]["consistency_distill"]
    assert entry["status"] == "failed" and "injected failure at after-step:consistency_distill:10" in entry[
        "error_message"]

    resumed = train(config, "--stage", "all", "--auto-resume", check=True)
    assert "continuing from step 8" in resumed.stdout
    assert_bit_identical(reference_run, checkpoint_dir(config))


def test_metrics_log_of_a_resumed_run_reads_like_an_uninterrupted_one(tmp_path, shared_data, reference_run):
    config = write_config(tmp_path, data_root=shared_data)
    train(config, "--stage", "all", env={"UPS_FAULT": "after-step:operator:18"})
    train(config, "--stage", "all", "--auto-resume", check=True)

    def steps(ckpt):
        lines = (ckpt / "metrics.jsonl").read_text().splitlines()
        return [(r["stage"], r["kind"], r["step"], r["loss"]) for r in map(json.loads, lines)]

    assert steps(checkpoint_dir(config)) == steps(reference_run)
