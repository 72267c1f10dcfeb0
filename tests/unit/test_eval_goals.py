"""Each later stage's goals, decided on numbers: the verdict, and the numbers in its text."""

from __future__ import annotations

import json

from ups.eval.goals import correction_goal, diffusion_goals, prior_goals, student_goals
from ups.eval.history import last_loss, loss_curves


def scores(crps, spread_skill=float("nan"), nrmse=0.3, evals=0.0, seconds=0.0):
    return {"crps": crps, "spread_skill": spread_skill, "nrmse_of_mean": nrmse,
            "denoiser_evals_per_draw": evals, "seconds_per_draw": seconds}


def by_name(goals):
    return {g.name: g for g in goals}


def test_a_calibrated_ensemble_that_beats_the_operator_mae_meets_every_diffusion_goal():
    goals = by_name(diffusion_goals(scores(0.10), scores(0.08, 1.0, nrmse=0.29)))
    assert all(g.met for g in goals.values())
    assert "0.800 x the operator's MAE 0.1" in goals["crps_vs_operator_mae"].text


def test_an_over_confident_ensemble_fails_spread_skill_and_says_so():
    g = by_name(diffusion_goals(scores(0.10), scores(0.08, 0.2)))["spread_skill"]
    assert not g.met and g.value == 0.2 and "over-confident" in g.text


def test_crps_just_above_the_target_is_not_met():
    assert not by_name(diffusion_goals(scores(0.10), scores(0.0901, 1.0)))["crps_vs_operator_mae"].met


def test_a_worse_mean_rollout_is_reported_with_both_numbers():
    g = by_name(diffusion_goals(scores(0.10, nrmse=0.2911), scores(0.08, 1.0, nrmse=0.3123)))["mean_rollout_not_worse"]
    assert not g.met and "WORSE" in g.text and "0.3123" in g.text and "0.2911" in g.text


def test_the_student_needs_close_crps_and_five_times_fewer_evaluations():
    teacher = scores(0.100, evals=15, seconds=1e-3)
    ok = by_name(student_goals(teacher, scores(0.104, evals=2, seconds=2e-4)))
    assert ok["crps_vs_teacher"].met and ok["fewer_denoiser_evals"].met
    assert "7.50x fewer" in ok["fewer_denoiser_evals"].text and "5.00x faster" in ok["fewer_denoiser_evals"].text
    bad = by_name(student_goals(teacher, scores(0.106, evals=4, seconds=5e-4)))
    assert not bad["crps_vs_teacher"].met and not bad["fewer_denoiser_evals"].met


def test_a_prior_no_closer_than_a_gaussian_fit_fails_both_goals():
    rows = {"steady_prior": {"spectrum_distance": 3.7, "mmd": 0.29}, "gaussian_fit": {"spectrum_distance": 0.86, "mmd": 0.19},
            "train_states": {"spectrum_distance": 0.8, "mmd": 0.16}}
    goals = prior_goals(rows)
    assert [g.met for g in goals] == [False, False]
    assert "NOT better" in goals[0].text and "3.7" in goals[0].text and "0.86" in goals[0].text


def test_the_residual_mean_correction_is_checked_against_the_operator():
    assert not correction_goal(0.2911, 0.3123).met
    assert correction_goal(0.30, 0.29).met


def test_loss_curves_group_by_stage_and_kind_and_skip_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    recs = [{"stage": "diff_residual", "kind": "train", "step": 5, "loss": 2.0},
            {"stage": "operator", "kind": "train", "step": 10, "loss": 1.0},
            {"stage": "operator", "kind": "val", "step": 10, "loss": 1.5},
            {"stage": "operator", "kind": "train", "step": 20, "loss": 0.5}]
    path.write_text("\n".join(json.dumps(r) for r in recs) + '\n{"stage": "operator", "kind": "tr')
    curves = loss_curves(path)
    assert list(curves) == ["operator", "diff_residual"], "pipeline order, not file order"
    assert curves["operator"]["train"] == {"step": [10, 20], "loss": [1.0, 0.5]}
    assert last_loss(curves, "operator", "val") == 1.5
    assert loss_curves(tmp_path / "absent.jsonl") == {}
