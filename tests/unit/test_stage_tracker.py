"""StageTracker: the seed's API and schema, plus crash consistency and clear errors."""

import json
import threading
from dataclasses import dataclass
from typing import Optional

import pytest

from ups.errors import StatusFileError
from ups.utils.stage_tracker import StageStatus, StageTracker


@pytest.fixture
def temp_checkpoint_dir(tmp_path):
    checkpoint_dir = tmp_path / "checkpoints"
    checkpoint_dir.mkdir()
    return checkpoint_dir


def test_stage_tracker_initialization(temp_checkpoint_dir):
    StageTracker(temp_checkpoint_dir)
    data = json.loads((temp_checkpoint_dir / "stage_status.json").read_text())
    assert data["schema_version"] == 1
    assert "created_at" in data
    for stage in StageTracker.STAGES:
        assert data["stages"][stage]["status"] == "not_started"


def test_mark_stage_started(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    tracker.mark_stage_started("operator", total_epochs=25)
    status = tracker.get_stage_status("operator")
    assert status.status == "in_progress"
    assert status.total_epochs == 25
    assert status.epoch == 0
    assert status.started_at is not None


def test_mark_stage_completed(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    tracker.mark_stage_started("operator", total_epochs=25)
    tracker.mark_stage_completed("operator", checkpoint="operator_ema.pt")
    status = tracker.get_stage_status("operator")
    assert status.status == "completed"
    assert status.checkpoint == "operator_ema.pt"
    assert status.completed_at is not None


def test_mark_stage_failed(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    tracker.mark_stage_started("operator", total_epochs=25)
    tracker.mark_stage_failed("operator", error_message="OOM error")
    status = tracker.get_stage_status("operator")
    assert status.status == "failed"
    assert status.error_message == "OOM error"


def test_get_next_stage_to_run(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    cfg = {"stages": {"operator": {"epochs": 25}, "diff_residual": {"epochs": 8},
                      "consistency_distill": {"epochs": 8}, "steady_prior": {"epochs": 0}}}
    assert tracker.get_next_stage_to_run(cfg) == "operator"
    tracker.mark_stage_completed("operator", "operator_ema.pt")
    assert tracker.get_next_stage_to_run(cfg) == "diff_residual"
    tracker.mark_stage_completed("diff_residual", "diffusion_residual_ema.pt")
    assert tracker.get_next_stage_to_run(cfg) == "consistency_distill"
    tracker.mark_stage_completed("consistency_distill", "consistency_student_ema.pt")
    assert tracker.get_next_stage_to_run(cfg) is None


def test_get_next_stage_accepts_a_validated_config(temp_checkpoint_dir):
    from ups.config import config_from_dict

    cfg = config_from_dict({"stages": {"operator": {"epochs": 0}, "diff_residual": {"epochs": 2}}})
    assert StageTracker(temp_checkpoint_dir).get_next_stage_to_run(cfg) == "diff_residual"


def test_get_completed_stages(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    assert tracker.get_completed_stages() == []
    tracker.mark_stage_completed("operator", "operator_ema.pt")
    assert tracker.get_completed_stages() == ["operator"]
    tracker.mark_stage_completed("diff_residual", "diffusion_residual_ema.pt")
    assert set(tracker.get_completed_stages()) == {"operator", "diff_residual"}


def test_reset(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    tracker.mark_stage_completed("operator", "operator_ema.pt")
    tracker.reset()
    assert all(s.status == "not_started" for s in tracker.get_all_statuses().values())


def test_invalid_stage_name_names_the_valid_stages(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    with pytest.raises(ValueError, match="Unknown stage 'invalid_stage'.*operator.*steady_prior"):
        tracker.get_stage_status("invalid_stage")
    with pytest.raises(ValueError, match="Unknown stage"):
        tracker.mark_stage_started("invalid_stage", total_epochs=10)


@dataclass
class SeedStageStatus:
    """The seed's dataclass, verbatim in shape: its reader does `cls(**entry)`."""

    status: str
    checkpoint: Optional[str] = None
    started_at: Optional[str] = None
    completed_at: Optional[str] = None
    epoch: Optional[int] = None
    total_epochs: Optional[int] = None
    error_message: Optional[str] = None


def test_a_reader_of_the_seed_schema_reads_every_entry_we_write(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    tracker.mark_stage_started("operator", total_epochs=3, total_steps=30, fingerprint="f", config={"a": 1})
    tracker.record_progress("operator", step=10, epoch=1, resume_state={"file": "x", "step": 10})
    tracker.mark_stage_completed("operator", "operator_ema.pt", outputs={"operator.pt": {"sha256": "0", "size": 1}})
    tracker.mark_stage_interrupted("diff_residual", step=4, epoch=0)
    data = json.loads(tracker.status_file.read_text())
    for entry in data["stages"].values():
        SeedStageStatus(**entry)  # raises TypeError on any key the seed does not know
    assert data["details"]["operator"]["outputs"]["operator.pt"]["size"] == 1
    assert data["details"]["diff_residual"]["interrupted_at"]


def test_progress_and_interruption_are_recorded(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    tracker.mark_stage_started("operator", total_epochs=3, total_steps=30)
    tracker.record_progress("operator", step=12, epoch=1, resume_state={"file": "operator/step-12.pt", "step": 12})
    tracker.mark_stage_interrupted("operator", step=13, epoch=1)
    st = tracker.get_stage_status("operator")
    assert (st.status, st.step, st.epoch, st.resume_state["step"]) == ("in_progress", 13, 1, 12)
    assert st.interrupted_at is not None


def test_failure_keeps_the_saved_state_for_the_next_run(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    tracker.mark_stage_started("operator", total_epochs=3, total_steps=30)
    tracker.record_progress("operator", step=8, epoch=0, resume_state={"file": "operator/step-8.pt", "step": 8})
    tracker.mark_stage_failed("operator", "RuntimeError: CUDA out of memory")
    st = tracker.get_stage_status("operator")
    assert st.status == "failed" and st.resume_state["step"] == 8


def test_corrupt_status_file_names_the_file_and_the_rebuild_command(temp_checkpoint_dir):
    StageTracker(temp_checkpoint_dir)
    (temp_checkpoint_dir / "stage_status.json").write_text('{"schema_version": 1, "stages": {')
    with pytest.raises(StatusFileError, match=r"stage_status.json is corrupt.*ups status --rebuild"):
        StageTracker(temp_checkpoint_dir).get_all_statuses()


def test_unknown_status_value_and_future_schema_are_refused(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir)
    data = json.loads(tracker.status_file.read_text())
    data["stages"]["operator"]["status"] = "done"
    tracker.status_file.write_text(json.dumps(data))
    with pytest.raises(StatusFileError, match="stages.operator.status"):
        tracker.get_stage_status("operator")
    data["stages"]["operator"]["status"] = "completed"
    data["schema_version"] = 2
    tracker.status_file.write_text(json.dumps(data))
    with pytest.raises(StatusFileError, match="schema_version 2"):
        tracker.get_stage_status("operator")


def test_writes_leave_no_temp_files_and_concurrent_updates_are_not_lost(temp_checkpoint_dir):
    tracker = StageTracker(temp_checkpoint_dir, verbose=False)

    def work(stage):
        for step in range(25):
            tracker.record_progress(stage, step=step, epoch=0)

    threads = [threading.Thread(target=work, args=(s,)) for s in StageTracker.STAGES]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(tracker.get_stage_status(s).step == 24 for s in StageTracker.STAGES)
    assert [p.name for p in temp_checkpoint_dir.iterdir()] == ["stage_status.json"]


def test_stage_status_from_dict_ignores_unknown_keys():
    assert StageStatus.from_dict({"status": "completed", "future_field": 1}).status == "completed"
