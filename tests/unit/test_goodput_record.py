"""The goodput record: attempts, interruptions and what they cost, as pure functions over dicts."""

from __future__ import annotations

import pytest

from ups.resume import goodput as gp


def attempt(record, host="a", **facts):
    a = gp.begin_attempt(record, host=host, pid=1, started_at="t")
    a.update(facts)
    return a


def test_an_attempt_left_running_is_counted_as_killed_by_the_next_one():
    record = gp.empty_record()
    first = attempt(record, wall_s=100.0, steps=50, step_s=80.0, at={"stage": "operator", "step": 50})
    attempt(record)
    assert first["end"] == gp.KILLED
    assert [i["kind"] for i in record["interruptions"]] == [gp.KILLED]
    assert gp.failures(record) == 1


def test_a_start_on_another_machine_marks_the_interruption_as_a_relaunch():
    record = gp.empty_record()
    first = attempt(record, host="vast-1")
    gp.end_attempt(record, first, gp.SIGTERM)
    attempt(record, host="vast-2")
    assert record["interruptions"][0]["relaunch"] is True
    assert gp.summarize(record)["interruptions"] == {"killed": 0, "sigterm": 1, "sigint": 0, "failure": 0,
                                                     "relaunch": 1}


def test_recomputed_work_is_priced_at_the_interrupted_attempts_step_time():
    record = gp.empty_record()
    first = attempt(record, wall_s=60.0, steps=40, step_s=40.0, at={"stage": "diff_residual", "step": 130},
                    stages={"diff_residual": {"steps": 40, "step_s": 20.0}})
    gp.end_attempt(record, first, gp.FAILURE)
    second = attempt(record, wall_s=50.0, startup_s=5.0, steps=30, step_s=30.0)
    gp.settle_recomputation(record, "operator", 0, 5.0)  # another stage: nothing to settle
    assert record["interruptions"][0]["recomputed_steps"] is None
    gp.settle_recomputation(record, "diff_residual", 100, 5.0)
    item = record["interruptions"][0]
    assert (item["recomputed_steps"], item["recomputed_s"], item["restart_s"]) == (30, pytest.approx(15.0), 5.0)
    s = gp.summarize(record)
    assert s["goodput"] == pytest.approx((40.0 + 30.0 - 15.0) / 110.0)
    assert s["restart_s"] == 5.0 and s["recomputed_steps"] == 30 and second["end"] == gp.RUNNING


def test_a_users_ctrl_c_is_an_interruption_but_not_a_failure():
    record = gp.empty_record()
    gp.end_attempt(record, attempt(record), gp.SIGINT)
    gp.end_attempt(record, attempt(record), gp.COMPLETED)
    assert gp.failures(record) == 0
    assert gp.summarize(record)["interruptions"]["sigint"] == 1


def test_save_cost_prefers_this_attempts_own_saves():
    record = gp.empty_record()
    attempt(record, periodic_saves=4, periodic_save_s=0.4)
    current = attempt(record)
    assert gp.save_cost_s(record, current) == pytest.approx(0.1)
    current.update(periodic_saves=2, periodic_save_s=1.0)
    assert gp.save_cost_s(record, current) == pytest.approx(0.5)
    assert gp.save_cost_s(gp.empty_record()) is None


def test_an_unreadable_record_starts_afresh():
    assert gp.valid_record({"version": 99}) == gp.empty_record()
    assert gp.valid_record("junk") == gp.empty_record()
    kept = {"version": gp.RECORD_VERSION, "attempts": [], "interruptions": []}
    assert gp.valid_record(kept) == kept and gp.valid_record(kept) is not kept
