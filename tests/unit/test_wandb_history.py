"""Where a resume continues the W&B history: the status and the metrics log, before `wandb.init`."""

from __future__ import annotations

from tests.remote_fixtures import operator_done_diffusion_running
from ups.remote.outcome import heartbeat_writer
from ups.remote.wandb_history import history_point, plan_branch
from ups.training.metrics import MetricsLogger, read_metrics


class StubRun:
    """`run.log` / `run.step` as wandb 0.31 answers them: the step of the *next* log."""

    def __init__(self, first_step: int = 0):
        self.step, self.logged, self.summary = first_step, [], {}

    def log(self, data: dict) -> None:
        self.logged.append(data)
        self.step += 1


def line(stage, step, kind="train"):
    return {"stage": stage, "kind": kind, "epoch": 0, "step": step, "global_step": step, "loss": 1.0, "lr": 0.1}


def logged(ckpt, lines, run=None):
    log = MetricsLogger(ckpt, progress="off", wandb_run=run or StubRun())
    for rec in lines:
        log.log(rec)
    log.close()


def test_each_metrics_line_records_the_wandb_step_it_was_logged_at(tmp_path):
    logged(tmp_path, [line("operator", 5), line("operator", 10)], StubRun(first_step=7))
    assert [r["wandb_step"] for r in read_metrics(tmp_path)] == [7, 8]


def test_the_resume_keeps_completed_stages_and_the_running_one_up_to_its_saved_state(tmp_path):
    operator_done_diffusion_running(tmp_path, step=8)  # diff_residual resumes from step 8
    logged(tmp_path, [line("operator", 5), line("operator", 10), line("diff_residual", 4),
                      line("diff_residual", 8), line("diff_residual", 12), line("diff_residual", 16)])
    point = history_point(tmp_path)
    assert (point.kept, point.last, point.dropped_global) == (3, 5, (12, 16))
    rewind = plan_branch(tmp_path, resume="allow", run_id="abc", previous="abc")
    assert rewind.init_kwargs() == {"resume_from": "abc?_step=3"}
    fork = plan_branch(tmp_path, resume="never", run_id="new1", previous="abc")
    assert fork.init_kwargs() == {"fork_from": "abc?_step=3"}
    assert "W&B steps 4-5 (trainer/global_step 12-16) will appear twice" in rewind.refused("abc", "not enabled")


def test_nothing_to_continue_is_a_plain_start(tmp_path):
    assert plan_branch(tmp_path, resume="allow", run_id="abc", previous="abc") is None  # no status yet
    operator_done_diffusion_running(tmp_path, step=8)
    assert plan_branch(tmp_path, resume="allow", run_id="abc", previous=None) is None  # no earlier run
    MetricsLogger(tmp_path, progress="off").log(line("operator", 5))  # W&B was off: no steps recorded
    assert plan_branch(tmp_path, resume="allow", run_id="abc", previous="abc") is None


def test_a_wandb_only_sync_beats_into_the_run_summary(monkeypatch):
    monkeypatch.setenv("CONTAINER_ID", "77")

    class Store:  # what WandbStore.for_run exposes: the live run, no fsspec root
        run = StubRun()

    class Snap:
        tag = "operator-step-40"

    heartbeat_writer(Store)(Snap)
    beat = Store.run.summary["ups_heartbeat"]
    assert (beat["tag"], beat["instance_id"]) == ("operator-step-40", 77)
