"""The numbers and pages of an evaluation, checked without models: nRMSE, curves, CSV, the HTML page."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from ups.config import Config, config_from_dict
from ups.errors import ConfigError, DataError
from ups.eval.evaluation import CORRECTED, OPERATOR, PERSISTENCE, EvalResult, plan_rollout, plot_steps, summary
from ups.eval.metrics import RunningCurve, RunningMean, nrmse
from ups.eval.report import curves_csv, jsonable, report_dict, write_reports


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


def _report(tmp_path):
    r = _result()
    report = report_dict(r, {}, {"config_hash": "abc"})
    paths = write_reports(tmp_path / "rep", r, report)
    return report, paths


def test_the_page_loads_nothing_from_the_network_and_its_images_are_the_pngs_beside_it(tmp_path):
    report, paths = _report(tmp_path)
    page = paths["html"].read_text()
    assert "https://" not in page and "http://" not in page and "<link" not in page and "<script" not in page
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert srcs == [f["file"] for f in report["figures"].values()] == ["rep_rollout.png"]
    assert all((tmp_path / s).read_bytes().startswith(b"\x89PNG") for s in srcs)


def test_every_number_the_page_shows_is_in_the_json(tmp_path):
    report, paths = _report(tmp_path)
    shown = re.findall(r"<td>(-?[0-9][0-9.e+-]*)</td>", paths["html"].read_text())
    assert shown, "the page has numeric cells"

    def numbers(obj):
        if isinstance(obj, dict):
            return [n for v in obj.values() for n in numbers(v)]
        if isinstance(obj, list):
            return [n for v in obj for n in numbers(v)]
        return [obj] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []

    in_json = {f"{v:.4g}" if isinstance(v, float) else str(v)
               for v in numbers(json.loads(paths["json"].read_text()))}
    assert set(shown) <= in_json


def test_nan_becomes_null_in_the_json():
    assert jsonable({"a": [float("nan"), 1.0, (2, float("inf"))]}) == {"a": [None, 1.0, [2, None]]}


def test_the_eval_split_is_eval_split_else_data_split_else_test():
    from ups.eval.run import eval_split

    assert eval_split(Config()) == "test"
    assert eval_split(config_from_dict({"data": {"split": "val"}})) == "val"
    assert eval_split(config_from_dict({"data": {"split": "val"}, "eval": {"split": "train"}})) == "train"


def test_eval_overlays_merge_section_by_section():
    from ups.pipeline.orchestrate import merge

    base = {"eval": {"max_samples": 4, "plot_samples": 2}, "latent": {"dim": 16}}
    merged = merge(base, {"eval": {"max_samples": 8}})
    assert merged == {"eval": {"max_samples": 8, "plot_samples": 2}, "latent": {"dim": 16}}
    assert base["eval"]["max_samples"] == 4  # the base is not modified
