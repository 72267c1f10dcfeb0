"""The numbers and pictures of an evaluation, checked without models: nRMSE, curves, ticks, SVG."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ups.config import Config, config_from_dict
from ups.errors import ConfigError, DataError
from ups.eval.evaluation import CORRECTED, OPERATOR, PERSISTENCE, EvalResult, plan_rollout, plot_steps, summary
from ups.eval.metrics import RunningCurve, RunningMean, nrmse
from ups.eval.report import curves_csv, render_html
from ups.eval.svg import Series, line_chart, nice_ticks


def test_nrmse_is_zero_for_a_perfect_prediction():
    u = np.random.default_rng(0).normal(size=(3, 16))
    assert np.allclose(nrmse(u, u), 0.0)


def test_nrmse_is_the_ratio_of_spatial_l2_norms_per_sample():
    true = np.array([[3.0, 4.0], [1.0, 0.0]])  # norms 5 and 1
    pred = np.array([[3.0, 4.0 + 5.0], [1.0, 2.0]])  # errors 5 and 2
    assert nrmse(pred, true) == pytest.approx([1.0, 2.0])


def test_predicting_zero_gives_nrmse_one_whatever_the_scale():
    true = np.random.default_rng(1).normal(size=(4, 32)) * 1e3
    assert nrmse(np.zeros_like(true), true) == pytest.approx(np.ones(4))


def test_nrmse_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        nrmse(np.zeros((2, 8)), np.zeros((2, 9)))


def test_nrmse_of_a_zero_truth_is_finite():
    assert np.isfinite(nrmse(np.ones((1, 4)), np.zeros((1, 4)))).all()


def test_running_curve_averages_samples_per_step_then_steps():
    c = RunningCurve(steps=2)
    c.add(np.array([[1.0, 3.0]]))
    c.add(np.array([[3.0, 5.0], [2.0, 4.0]]))
    assert c.curve == pytest.approx([2.0, 4.0])
    assert c.mean == pytest.approx(3.0)


def test_running_curve_is_independent_of_batching():
    values = np.random.default_rng(2).random((10, 5))
    whole, parts = RunningCurve(5), RunningCurve(5)
    whole.add(values)
    for lo in range(0, 10, 3):
        parts.add(values[lo:lo + 3])
    assert whole.curve == pytest.approx(parts.curve)


def test_running_mean_of_nothing_is_nan():
    assert math.isnan(RunningMean().mean)


def test_rollout_defaults_to_the_end_of_the_trajectory():
    assert plan_rollout(Config(), n_times=41) == 40
    strided = config_from_dict({"data": {"time_stride": 4}})
    assert plan_rollout(strided, n_times=41) == 10


def test_a_rollout_longer_than_the_data_is_a_config_error():
    cfg = config_from_dict({"eval": {"rollout_steps": 50}})
    with pytest.raises(ConfigError, match="eval.rollout_steps=50"):
        plan_rollout(cfg, n_times=41)


def test_trajectories_too_short_for_one_step_are_a_data_error():
    with pytest.raises(DataError, match="time_stride"):
        plan_rollout(config_from_dict({"data": {"time_stride": 5}}), n_times=3)


def test_plotted_steps_are_first_middle_last():
    assert plot_steps(40) == [1, 20, 40]
    assert plot_steps(1) == [1]


def test_nice_ticks_cover_the_range_with_round_values():
    ticks = nice_ticks(0.013, 0.87)
    assert ticks[0] <= 0.013 and ticks[-1] >= 0.87
    assert all(abs(t * 10 - round(t * 10)) < 1e-9 for t in ticks)


def test_nice_ticks_survive_a_flat_or_nonfinite_range():
    assert nice_ticks(2.0, 2.0)
    assert nice_ticks(float("nan"), 1.0) == [0.0]


def test_line_chart_is_an_svg_with_one_polyline_per_series_and_skips_nan():
    svg = line_chart([Series("a", [1, 2, 3], [1.0, float("nan"), 3.0]), Series("b<&>", [1, 2], [2.0, 2.5])],
                     "t", "x", "y")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2
    assert "nan" not in svg.lower().replace("nanosecond", "")
    assert "b&lt;&amp;&gt;" in svg  # labels are escaped


def test_log_axis_drops_nonpositive_values():
    svg = line_chart([Series("a", [1, 2, 3], [0.0, 0.1, 10.0])], "t", "x", "y", log_y=True)
    assert "1e-1" in svg and "1e1" in svg


def _result(with_correction: bool = True) -> EvalResult:
    curves = {PERSISTENCE: [0.5, 1.0], OPERATOR: [0.1, 0.2]}
    one = {PERSISTENCE: 0.4, OPERATOR: 0.05}
    if with_correction:
        curves[CORRECTED], one[CORRECTED] = [0.08, 0.15], 0.04
    return EvalResult(split="test", n_samples=2, rollout_steps=2, time_stride=1, times=[0.1, 0.2],
                      x=[0.0, 0.5], one_step=one, curves=curves)


def test_summary_leads_with_the_operator_rollout_nrmse():
    s = summary(_result())
    assert s["metric:nrmse"] == pytest.approx(0.15)
    assert s["metric:nrmse_persistence"] == pytest.approx(0.75)
    assert s["metric:nrmse_corrected"] == pytest.approx(0.115)
    assert "metric:nrmse_corrected" not in summary(_result(with_correction=False))


def test_csv_has_one_row_per_rollout_step_and_a_column_per_method():
    lines = curves_csv(_result()).strip().splitlines()
    assert lines[0] == "step,time,nrmse_persistence,nrmse_operator,nrmse_operator+diffusion"
    assert len(lines) == 3 and lines[2].startswith("2,0.2,1,0.2,0.15")


def test_html_report_is_self_contained():
    r = _result()
    page = render_html(r, {"summary": summary(r), "created_at": "now", "checkpoints": {}})
    assert "<svg" in page and "<script" not in page
    assert "https://" not in page and "src=" not in page and "<link" not in page


def test_the_eval_split_is_eval_split_else_data_split_else_test():
    from ups.eval.run import eval_split

    assert eval_split(Config()) == "test"
    assert eval_split(config_from_dict({"data": {"split": "val"}})) == "val"
    assert eval_split(config_from_dict({"data": {"split": "val"}, "eval": {"split": "train"}})) == "train"


def test_eval_overlays_merge_section_by_section():
    from ups.eval.orchestrate import merge

    base = {"eval": {"max_samples": 4, "plot_samples": 2}, "latent": {"dim": 16}}
    merged = merge(base, {"eval": {"max_samples": 8}})
    assert merged == {"eval": {"max_samples": 8, "plot_samples": 2}, "latent": {"dim": 16}}
    assert base["eval"]["max_samples"] == 4  # the base is not modified
