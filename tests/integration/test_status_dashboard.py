"""`show_training_status.py` / `ups status` on the directories a user meets: fresh, partial,
running then interrupted (a real SIGTERM), failed, complete, remote, broken — and `--rebuild`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

from tests.helpers import REPO, checkpoint_dir, train, write_config
from ups.errors import CheckpointError, StatusFileError
from ups.status.dashboard import gather
from ups.status.text import format_age, render
from ups.resume.layout import STAGE_NAMES, STAGE_OUTPUTS, STATUS_FILE
from ups.resume.lock import LOCK_FILE
from ups.resume.metadata import update_metadata
from ups.resume.rebuild import rebuild_status
from ups.resume.tracker import StageStatus, StageTracker

SCRIPT = REPO / "scripts" / "show_training_status.py"


def show(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60)


def states(facts: dict) -> dict[str, str]:
    return {name: facts["stages"][name]["state"] for name in STAGE_NAMES}


def test_complete_run_shows_the_spec_sections_and_verified_outputs(finished_run):
    _, ckpt = finished_run
    result = show(ckpt)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for section in ("TRAINING PIPELINE STATUS", "Training Stages:", "Pipeline Status:", "Checkpoint Files:"):
        assert section in out
    assert "Training Complete:        ✅ Yes" in out
    for files in STAGE_OUTPUTS.values():
        for name in files:
            line = next(ln for ln in out.split("Checkpoint Files:")[1].splitlines() if f" {name} " in ln)
            assert "verified" in line and ("KB" in line or "MB" in line), line
    assert out.count("✅ completed") == 4


def test_json_output_holds_the_same_facts(finished_run):
    _, ckpt = finished_run
    result = show(ckpt, "--json")
    facts = json.loads(result.stdout)
    assert states(facts) == dict.fromkeys(STAGE_NAMES, "completed")
    assert facts["pipeline"]["trained"] is True
    assert facts["stages"]["operator"]["outputs"]["operator_ema.pt"]["check"] == "verified"
    assert facts["files"]["operator.pt"] == (ckpt / "operator.pt").stat().st_size


def test_the_wandb_run_and_evaluations_of_metadata_are_shown(finished_run):
    _, ckpt = finished_run
    update_metadata(ckpt, training_wandb={"id": "abc123", "name": "jolly-mountain-42", "project": "ups",
                                          "entity": "team", "url": "https://wandb.ai/team/ups/runs/abc123",
                                          "mode": "offline"},
                    last_small_eval={"metric:nrmse": 0.0321, "metric:nrmse_persistence": 0.4188},
                    last_small_eval_at="2025-10-28T12:30:00Z")
    text = render(gather(ckpt))
    assert "WandB Run:" in text and "Run ID:                   abc123" in text
    assert "Project:                  ups/team" in text and "https://wandb.ai/team/ups/runs/abc123" in text
    assert "Small Eval:               ✅ Run at 2025-10-28 12:30:00 UTC" in text
    assert "NRMSE:               0.0321" in text and "Full Eval:                ❌ Not run" in text


def test_fresh_directory_shows_every_stage_not_started(tmp_path):
    StageTracker(tmp_path, verbose=False)
    facts = gather(tmp_path)
    assert states(facts) == dict.fromkeys(STAGE_NAMES, "not_started")
    text = render(facts)
    assert "Training Complete:        ❌ No" in text and "Small Eval:               ❌ Not run" in text
    assert "WandB Run:" not in text  # no run recorded


def test_partial_run_shows_completed_and_pending_stages(finished_run):
    _, ckpt = finished_run
    tracker = StageTracker(ckpt, verbose=False)
    for stage in STAGE_NAMES[1:]:
        tracker.set_stage(stage, StageStatus())
        for name in STAGE_OUTPUTS[stage]:
            (ckpt / name).unlink()
    facts = gather(ckpt)
    assert states(facts) == {"operator": "completed", "diff_residual": "not_started",
                             "consistency_distill": "not_started", "steady_prior": "not_started"}
    assert facts["stages"]["diff_residual"]["outputs"]["diffusion_residual.pt"]["check"] == "absent"
    assert "❌ diffusion_residual.pt" in render(facts)


def _wait_for_first_save(ckpt: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-2000:]
        try:
            data = json.loads((ckpt / STATUS_FILE).read_text())
            if (data.get("details", {}).get("operator") or {}).get("resume_state"):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("training saved no resumable state in time")


def test_running_then_interrupted_stage_shows_progress_and_time_since_last_save(tmp_path, shared_data):
    config = write_config(tmp_path, {"stages": {"operator": {"epochs": 200}}}, data_root=shared_data)
    ckpt = checkpoint_dir(config)
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "train.py"), "--config", str(config),
                             "--stage", "operator"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_for_first_save(ckpt, proc)
        running = gather(ckpt)
        assert running["stages"]["operator"]["state"] == "running"
        assert running["trainer"]["pid"] == proc.pid and running["trainer"]["alive"]
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out[-2000:]
    facts = gather(ckpt)
    op = facts["stages"]["operator"]
    assert op["state"] == "interrupted" and op["interrupted_at"]
    assert 0 < op["step"] < op["total_steps"] and op["total_epochs"] == 200
    assert op["last_save"]["step"] == op["step"] and op["last_save"]["seconds_ago"] < 60
    text = render(facts)
    assert f"operator: step {op['step']}/{op['total_steps']}" in text
    assert "last save: step" in text and "ago" in text and "--auto-resume" in text
    assert "Resumable States:" in text


def test_a_stage_whose_trainer_died_silently_shows_as_stopped(tmp_path):
    """kill -9 / OOM: the status still says in_progress and the lock file still names the dead pid."""
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tracker = StageTracker(tmp_path, verbose=False)
    tracker.mark_stage_started("operator", total_epochs=5, total_steps=50)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    facts = gather(tmp_path)
    assert facts["stages"]["operator"]["state"] == "stopped" and facts["trainer"]["alive"] is False
    assert "crash, OOM kill or kill -9" in render(facts)


def test_failed_stage_shows_its_error_and_last_save(finished_run):
    _, ckpt = finished_run
    tracker = StageTracker(ckpt, verbose=False)
    tracker.mark_stage_started("steady_prior", total_epochs=3, total_steps=30)
    tracker.record_progress("steady_prior", step=12, epoch=1,
                            resume_state={"file": "steady_prior/step-000000012.pt", "step": 12, "epoch": 1,
                                          "saved_at": "2020-01-01T00:00:00Z"})
    tracker.mark_stage_failed("steady_prior", "RuntimeError: CUDA out of memory")
    result = show(ckpt)
    assert result.returncode == 0
    assert "❌ failed" in result.stdout
    assert "error: RuntimeError: CUDA out of memory" in result.stdout
    assert "steady_prior: step 12/30 (1/3 epochs done)" in result.stdout
    assert "d " in result.stdout.split("last save:")[1].splitlines()[0]  # years ago, in days


def test_an_altered_output_is_flagged(finished_run):
    _, ckpt = finished_run
    data = bytearray((ckpt / "operator.pt").read_bytes())
    data[-100] ^= 0xFF
    (ckpt / "operator.pt").write_bytes(bytes(data))
    facts = gather(ckpt)
    assert facts["stages"]["operator"]["outputs"]["operator.pt"]["check"] == "altered"
    assert "operator.pt" in render(facts) and "ALTERED: sha256 differs" in render(facts)
    assert gather(ckpt, verify="size")["stages"]["operator"]["outputs"]["operator.pt"]["check"] == "size-ok"


def test_a_remote_uri_shows_the_same_facts(finished_run):
    _, ckpt = finished_run
    local, remote = gather(ckpt), gather(f"file://{ckpt}")
    assert states(local) == states(remote) and remote["location"] == f"file://{ckpt}"
    assert remote["stages"]["operator"]["outputs"] == local["stages"]["operator"]["outputs"]


def test_a_non_local_store_is_read_through_fsspec(finished_run):
    _, ckpt = finished_run
    fs = fsspec.filesystem("memory")
    for name in (STATUS_FILE, "metadata.json", "operator.pt", "operator_ema.pt"):
        fs.pipe(f"/run-under-test/{name}", (ckpt / name).read_bytes())
    try:
        facts = gather("memory://run-under-test")
        assert facts["trainer"] == {"remote": True, "alive": None}, "a remote copy: the trainer is unknown"
        assert facts["stages"]["operator"]["outputs"]["operator_ema.pt"]["check"] == "verified"
        assert facts["stages"]["diff_residual"]["outputs"]["diffusion_residual.pt"]["check"] == "missing"
        fs.pipe(f"/run-under-test/{STATUS_FILE}", b"{not json")
        with pytest.raises(StatusFileError, match="memory://run-under-test/stage_status.json is corrupt"):
            gather("memory://run-under-test")
    finally:
        fs.rm("/run-under-test", recursive=True)


@pytest.mark.parametrize("case", ["missing dir", "missing status", "corrupt status"])
def test_broken_directories_are_one_clear_line_and_a_nonzero_exit(tmp_path, case):
    target = tmp_path / "ckpt"
    if case != "missing dir":
        target.mkdir()
    if case == "corrupt status":
        (target / STATUS_FILE).write_text('{"schema_version": 1, "stages": {')
    result = show(target)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    expected = {"missing dir": "checkpoint directory not found", "missing status": "no stage_status.json",
                "corrupt status": "ups status --rebuild"}[case]
    assert expected in result.stderr


def test_a_corrupt_metadata_file_is_a_warning_not_an_error(finished_run):
    _, ckpt = finished_run
    (ckpt / "metadata.json").write_text("{oops")
    result = show(ckpt)
    assert result.returncode == 0 and "metadata.json is corrupt" in result.stdout


def test_rebuilt_status_lets_auto_resume_skip_every_stage(finished_run):
    config, ckpt = finished_run
    (ckpt / STATUS_FILE).write_text("{ truncated by a disk error")
    rebuilt = show(ckpt, "--rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.count(" completed ") == 4
    assert list(ckpt.glob(f"{STATUS_FILE}.corrupt-*"))
    assert "Goodput record: none readable in the previous file" in rebuilt.stdout  # lost with the file, and said
    again = train(config, "--stage", "all", "--auto-resume")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("completed, outputs verified") >= 4 and "Training Operator" not in again.stdout


def test_rebuild_keeps_resumable_states_and_downgrades_partial_stages(finished_run):
    _, ckpt = finished_run
    (ckpt / "steady_prior.pt").unlink()
    whole = (ckpt / "consistency_student.pt").read_bytes()
    (ckpt / "consistency_student.pt").write_bytes(whole[: len(whole) // 2])
    goodput = json.loads((ckpt / STATUS_FILE).read_text())["details"]["goodput"]
    report = rebuild_status(ckpt)
    assert report.goodput_attempts == len(goodput["attempts"]) >= 1  # no file can vouch for it: carried over
    assert json.loads((ckpt / STATUS_FILE).read_text())["details"]["goodput"] == goodput
    assert report.stages["operator"].status == "completed"
    assert report.stages["steady_prior"].status == "not_started"
    assert report.stages["consistency_distill"].status == "not_started"
    assert "truncated or corrupt" in report.stages["consistency_distill"].reason
    assert report.backup is not None and report.backup.name.startswith(f"{STATUS_FILE}.previous-")
    entry = StageTracker(ckpt, verbose=False).get_stage_status("operator")
    assert entry.fingerprint and entry.config and set(entry.outputs) == set(STAGE_OUTPUTS["operator"])


def test_rebuild_of_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        rebuild_status(tmp_path / "nope")


def test_ages_read_naturally():
    assert [format_age(s) for s in (5, 125, 7300, 200000)] == ["5s ago", "2m 05s ago", "2h 01m ago", "2d 7h ago"]
