"""PDEBench's evaluation protocol: frames, the metric as metric_func computes it, the baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ups.eval.protocol import (
    HEAT,
    MEAN,
    PERSISTENCE,
    ZERO,
    Protocol,
    baselines,
    evaluate_protocol,
    metrics_py_reported,
    per_sample_nrmse,
    verdict,
)


def metric_func_nrmse(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """PDEBench's err_nRMSE before the batch mean, written as models/metrics.py writes it
    (tensors [b, x, t, c], RMS over space), for samples [N, T, X]."""
    p = torch.from_numpy(pred).permute(0, 2, 1)[..., None].permute(0, 3, 1, 2)  # [b, c, x, t]
    t = torch.from_numpy(target).permute(0, 2, 1)[..., None].permute(0, 3, 1, 2)
    nb, nc, nt = t.shape[0], t.shape[1], t.shape[-1]
    err = torch.sqrt(torch.mean((p.reshape(nb, nc, -1, nt) - t.reshape(nb, nc, -1, nt)) ** 2, dim=2))
    nrm = torch.sqrt(torch.mean(t.reshape(nb, nc, -1, nt) ** 2, dim=2))
    return (err / nrm).mean(dim=(1, 2)).numpy()  # over channels and time, per sample


def test_frames_are_every_fifth_snapshot_ten_given_and_thirty_one_predicted():
    u = np.arange(201, dtype=float)[None, :, None] * np.ones((2, 1, 4))
    given, target = Protocol().frames(u)
    assert given.shape == (2, 10, 4) and target.shape == (2, 31, 4)
    assert given[0, :, 0].tolist() == list(range(0, 50, 5))
    assert target[0, :, 0].tolist() == list(range(50, 201, 5))


def test_too_short_trajectories_are_refused_with_the_count_needed():
    with pytest.raises(ValueError, match="201 needed"):
        Protocol().frames(np.zeros((1, 200, 4)))


def test_per_sample_nrmse_is_pdebench_metric_func():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(6, 31, 32))
    pred = target + rng.normal(scale=0.3, size=target.shape)
    np.testing.assert_allclose(per_sample_nrmse(pred, target), metric_func_nrmse(pred, target), rtol=1e-12)


def test_metrics_py_divides_the_sum_of_batch_means_by_the_last_batch_index():
    per = np.concatenate([np.full(50, 0.2), np.full(50, 0.4)])
    assert metrics_py_reported(per) == pytest.approx((0.2 + 0.4) / 1)
    assert math.isnan(metrics_py_reported(np.ones(10)))  # one batch: PDEBench divides by zero


def test_baselines_zero_is_one_persistence_of_a_steady_field_is_zero_heat_is_exact():
    nu, dt, steps = 0.01, 0.05, 5
    x = (np.arange(64) + 0.5) / 64
    mode = np.sin(2 * np.pi * 3 * x) + 0.25
    given = np.stack([mode, mode])[:, None, :]
    preds = baselines(given, steps, dt, nu)
    truth = 0.25 + np.sin(2 * np.pi * 3 * x)[None] * np.exp(-nu * (6 * np.pi) ** 2 * dt * np.arange(1, steps + 1))[:, None]
    np.testing.assert_allclose(preds[HEAT][0], truth, atol=1e-12)
    np.testing.assert_allclose(per_sample_nrmse(preds[ZERO], np.stack([truth, truth])), 1.0)
    np.testing.assert_allclose(preds[MEAN][0], 0.25, atol=1e-12)
    np.testing.assert_allclose(preds[PERSISTENCE][0], np.repeat(mode[None], steps, axis=0))


def test_one_near_zero_sample_moves_the_mean_but_not_the_median():
    x = (np.arange(32) + 0.5) / 32
    ordinary = np.sin(2 * np.pi * x)[None, None] * np.ones((4, 11, 1))
    tiny = 1e-3 * ordinary[:1]
    u = np.concatenate([ordinary, tiny])
    shifted = lambda given, steps: np.repeat(given[:, -1:], steps, axis=1) + 1e-2  # noqa: E731
    res = evaluate_protocol([u], Protocol(time_stride=1, given=1, predicted=10), 0.1, 0.0, {"model": shifted})
    s = res.scores["model"]
    assert s.per_sample[-1] > 100 * s.per_sample[0]
    assert s.median == pytest.approx(s.per_sample[0])
    assert s.mean > 5 * s.median


def test_evaluation_streams_batches_and_stops_at_max_samples():
    rng = np.random.default_rng(1)
    u = rng.normal(size=(7, 6, 16))
    p = Protocol(time_stride=1, given=2, predicted=4, max_samples=5)
    whole = evaluate_protocol([u], p, 0.1, 0.01)
    parts = evaluate_protocol([u[:3], u[3:]], p, 0.1, 0.01)
    assert whole.n_samples == parts.n_samples == 5
    for name in whole.scores:
        np.testing.assert_allclose(whole.scores[name].per_sample, parts.scores[name].per_sample)
        np.testing.assert_allclose(whole.scores[name].curve, parts.scores[name].curve)
    assert whole.scores[ZERO].mean == pytest.approx(1.0)


def test_the_verdict_names_the_best_baseline_by_mean():
    x = (np.arange(32) + 0.5) / 32
    u = (np.sin(2 * np.pi * x) + 0.1)[None, None] * np.exp(-np.arange(6))[None, :, None] * np.ones((3, 1, 1))
    half = lambda given, steps: 0.5 * np.repeat(given[:, -1:], steps, axis=1)  # noqa: E731
    res = evaluate_protocol([u], Protocol(time_stride=1, given=1, predicted=5), 1.0, 0.0, {"model": half})
    best = min(("zero", "mean", "heat", "persistence"), key=lambda b: res.scores[b].mean)
    line = verdict(res, "model")
    assert line.startswith(f"model vs the best free baseline ({best}): mean ")
    assert f"{res.scores['model'].mean / res.scores[best].mean:.2f}x" in line
