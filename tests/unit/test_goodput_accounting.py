"""Rank 0's recorder: an attempt's time into the status file, save waits apart from step time."""

from __future__ import annotations

import json
import time

import pytest

from ups.config import config_from_dict
from ups.resume.signals import TrainingInterrupted
from ups.resume.tracker import StageTracker
from ups.training.accounting import RunAccounting, TimedSaver


class SlowSaver:
    state_dir = "state/operator"

    def __init__(self, seconds: float):
        self.seconds = seconds

    def save(self, state, *, wait=False):
        time.sleep(self.seconds)

    def wait(self):
        pass


def stored(tmp_path) -> dict:
    return json.loads((tmp_path / "stage_status.json").read_text())["details"]["goodput"]


def test_save_waits_are_not_step_time_and_they_set_the_auto_interval(tmp_path):
    cfg = config_from_dict({"checkpoint": {"every_seconds": "auto", "auto": {"min_seconds": 0.001}}})
    acct = RunAccounting(StageTracker(tmp_path, verbose=False), cfg, host="box")
    assert acct.interval().bound == "min"  # nothing measured yet
    with acct.recording():
        meter = acct.stage("operator", start_step=0)
        saver = TimedSaver(SlowSaver(0.05), meter)
        assert saver.state_dir == "state/operator"  # everything else passes through
        meter.step_done(1)
        saver.save({}, wait=False)
        meter.step_done(2)
    attempt = stored(tmp_path)["attempts"][0]
    assert attempt["end"] == "completed" and attempt["steps"] == 1
    assert attempt["periodic_saves"] == 1 and attempt["save_blocked_s"] >= 0.05
    assert attempt["step_s"] < 0.05  # the save's wait is not counted as training
    assert acct.interval().save_cost_s == pytest.approx(attempt["periodic_save_s"])
    assert acct.interval().bound is None


def test_a_signal_ends_the_attempt_as_sigterm_and_the_next_one_counts_it(tmp_path):
    cfg = config_from_dict({})
    tracker = StageTracker(tmp_path, verbose=False)
    with pytest.raises(TrainingInterrupted):
        with RunAccounting(tracker, cfg, host="box").recording():
            raise TrainingInterrupted(15, "stopped")
    later = RunAccounting(tracker, cfg, host="box")
    assert [i["kind"] for i in later.record["interruptions"]] == ["sigterm"]
    assert any("goodput so far" in line for line in later.plan_lines())
    assert not any("checkpoint interval" in line for line in later.plan_lines())  # a fixed interval


def test_an_attempt_that_never_ended_is_killed_in_the_next_plan(tmp_path):
    cfg = config_from_dict({"checkpoint": {"every_seconds": "auto"}})
    tracker = StageTracker(tmp_path, verbose=False)
    RunAccounting(tracker, cfg, host="box").begin()  # then the process vanished
    later = RunAccounting(tracker, cfg, host="box")
    assert later.interval().failures == 1
    assert stored(tmp_path)["attempts"][0]["end"] == "running"  # nothing is written before this one trains
