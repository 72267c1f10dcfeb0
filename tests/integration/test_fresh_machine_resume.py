"""A machine dies mid-stage; a brand-new one resumes from the remote copy alone (file:// store)
and ends with weights bit-identical to a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, assert_bit_identical, checkpoint_dir, train, write_config
from tests.remote_fixtures import remote_state, remote_status, wait_until


def remote_config(root: Path, remote: Path, data_root: Path) -> Path:
    """The reference run's config, plus a remote that receives every saved state at once."""
    return write_config(root, {"checkpoint": {"remote": remote.as_uri(), "upload_every_seconds": 0}},
                        data_root=data_root)


def launch(config: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("UPS_FAULT", "UPS_TEST"))}
    full_env.update({"PYTHONUNBUFFERED": "1", **env})
    return subprocess.Popen([sys.executable, str(REPO / "scripts" / "train.py"), "--config", str(config),
                             "--stage", "all"], cwd=REPO, env=full_env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def sigkill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def resume_on_fresh_machine(root: Path, remote: Path, data_root: Path) -> tuple[subprocess.CompletedProcess, Path]:
    config = remote_config(root, remote, data_root)
    assert not checkpoint_dir(config).exists(), "machine B starts empty"
    done = train(config, "--stage", "all", "--resume-from", remote.as_uri(), check=True)
    return done, checkpoint_dir(config)


def test_sigkill_mid_stage_then_an_empty_machine_resumes_from_the_remote_bit_identically(
        tmp_path, shared_data, reference_run):
    remote = tmp_path / "remote"
    a = remote_config(tmp_path / "a", remote, shared_data)
    # Killed by the test once the remote holds a state of the running stage; the fault
    # point is only a backstop that kills it (still mid-stage) on a very slow machine.
    proc = launch(a, tmp_path / "a.log", {"UPS_FAULT": "after-step:diff_residual:28", "CONTAINER_ID": "machine-a"})
    wait_until(proc, lambda: remote_state(remote, "diff_residual") is not None)
    sigkill(proc)
    status = remote_status(remote)
    assert status["stages"]["operator"]["status"] == "completed"
    assert status["stages"]["diff_residual"]["status"] == "in_progress", "killed mid-stage"
    saved_step = remote_state(remote, "diff_residual")["step"]

    resumed, b = resume_on_fresh_machine(tmp_path / "b", remote, tmp_path / "b" / "data")

    assert "Downloading checkpoints from file://" in resumed.stdout
    assert "operator             skip      completed, outputs verified" in resumed.stdout
    assert f"continuing from step {saved_step}" in resumed.stdout
    assert "✓ Remote copy up to date" in resumed.stdout
    assert_bit_identical(reference_run, b)
    # The goodput record came with the status: machine A's attempt was killed and the run relaunched on B,
    # and the remote copy holds the whole story.
    record = remote_status(remote)["details"]["goodput"]
    assert [x["end"] for x in record["attempts"]] == ["killed", "completed"]
    assert record["attempts"][0]["host"] == "machine-a" and record["interruptions"][0]["relaunch"] is True


def test_sigkill_during_an_upload_leaves_a_remote_that_still_resumes_bit_identically(
        tmp_path, shared_data, reference_run):
    remote = tmp_path / "remote"
    a = remote_config(tmp_path / "a", remote, shared_data)
    log = tmp_path / "a.log"
    # The second diff_residual state upload pauses halfway: the remote then holds the first
    # one, and half of the second under a temp name, when the machine dies.
    proc = launch(a, log, {"UPS_TEST_UPLOAD_STALL": "state/diff_residual/*#2:120"})
    wait_until(proc, lambda: "upload paused mid-file: state/diff_residual/" in log.read_text())
    sigkill(proc)
    partial = list((remote / "state" / "diff_residual").glob(".tmp-*"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0, "killed while a file was half uploaded"
    named = remote_state(remote, "diff_residual")
    assert named is not None and not partial[0].name.startswith(f".tmp-{Path(named['file']).name}")

    resumed, b = resume_on_fresh_machine(tmp_path / "b", remote, shared_data)

    assert f"continuing from step {named['step']}" in resumed.stdout
    assert_bit_identical(reference_run, b)
    assert not list(remote.rglob(".tmp-*")), "the next uploader clears a killed upload's temp file"


@pytest.mark.parametrize("stop, code", [("sigterm", 143), ("crash", 1)])
def test_on_sigterm_or_a_crash_the_last_state_is_flushed_to_the_remote_before_exit(
        tmp_path, shared_data, stop, code):
    remote = tmp_path / "remote"
    # States are throttled to one an hour: only the exit flush can bring the last one over.
    config = write_config(tmp_path / "a", {"checkpoint": {"remote": remote.as_uri(), "upload_every_seconds": 3600}},
                          data_root=shared_data)
    log = tmp_path / "a.log"
    env = {"UPS_FAULT": "raise:after-step:diff_residual:10"} if stop == "crash" else {}
    proc = launch(config, log, env)
    if stop == "sigterm":
        wait_until(proc, lambda: "[diff_residual] train" in log.read_text())
        proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == code, log.read_text()[-2000:]
    out = log.read_text()
    assert "✓ Remote copy up to date" in out
    local = json.loads((checkpoint_dir(config) / "stage_status.json").read_text())
    assert remote_status(remote) == local, "the remote holds exactly the final local status"
    named = remote_state(remote, "diff_residual")
    assert (remote / "state" / named["file"]).read_bytes() == (checkpoint_dir(config) / "state" / named["file"]).read_bytes()


def test_resume_from_an_empty_remote_fails_with_must_and_starts_fresh_with_allow(tmp_path, shared_data, capsys):
    from ups.commands.common import run_main
    from ups.commands.train import main as train_main

    empty = (tmp_path / "empty-remote").as_uri()
    config = write_config(tmp_path / "b", data_root=shared_data)
    base = ["--config", str(config), "--stage", "operator", "--set", "stages.operator.epochs=1", "--resume-from", empty]
    assert run_main(train_main, [*base, "--resume-mode", "must"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: file://") and "holds no checkpoint" in err and "--resume-mode must" in err
    assert run_main(train_main, base) == 0
    assert "holds no checkpoint (stage_status.json not found): starting training from scratch" in capsys.readouterr().out
