"""The goodput bench's replay model: closed-form attempts checked against cases worked by hand."""

from __future__ import annotations

import pytest

from bench import replay

COSTS = replay.Costs(save_s=1.0, write_s=0.0, restart_s=5.0)


def test_without_failures_the_job_pays_its_start_and_each_save_but_the_last():
    out = replay.replay_step_level(100.0, COSTS, replay.fixed(10.0), [])
    assert out.finished and out.wall_s == pytest.approx(5.0 + 100.0 + 9 * 1.0)


def test_a_failure_loses_the_work_since_the_newest_durable_save():
    # Saves after 10 s of compute each: at wall 15-16, 26-27, 37-38 ... a failure at 40 keeps 3 saves (30 s).
    out = replay.replay_step_level(100.0, COSTS, replay.fixed(10.0), [40.0])
    assert out.finished and out.failures == 1
    assert out.wall_s == pytest.approx(40.0 + 5.0 + 70.0 + 6 * 1.0)


def test_a_save_still_being_written_at_the_failure_does_not_count():
    slow = replay.Costs(save_s=1.0, write_s=3.0, restart_s=5.0)
    # The third save blocks 37-38 and is durable at 41: a failure at 40 keeps two saves (20 s).
    out = replay.replay_step_level(100.0, slow, replay.fixed(10.0), [40.0])
    assert out.wall_s == pytest.approx(40.0 + 5.0 + 80.0 + 7 * 1.0)


def test_stage_level_resume_keeps_only_completed_stages():
    out = replay.replay_stage_level([30.0, 100.0], 5.0, [60.0])  # stage 2 was 25 s in: lost
    assert out.finished and out.wall_s == pytest.approx(60.0 + 5.0 + 70.0)


def test_a_replay_past_the_cap_is_credited_with_what_is_durable():
    out = replay.replay_stage_level([30.0, 100.0], 5.0, [40.0, 80.0, 110.0, 140.0], cap_s=150.0)
    assert not out.finished and out.useful_s == 30.0 and out.wall_s == 150.0


def test_the_auto_rule_tightens_the_interval_once_failures_are_seen():
    rule = replay.auto(replay.Costs(0.5, 0.0, 5.0), prior_mtbf_s=36000.0, min_failures=2, min_s=1.0, max_s=1e4)
    out = replay.replay_step_level(5000.0, replay.Costs(0.5, 0.0, 5.0), rule, [500.0, 1000.0, 1500.0])
    assert out.intervals[0] == pytest.approx(189.7, rel=1e-3)  # √(2·0.5·36000), the prior
    assert out.intervals[-1] < out.intervals[0]  # three failures in 1500 s: MTBF 500 s observed
