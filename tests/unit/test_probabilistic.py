"""CRPS, spread/skill, energy spectra and MMD on arrays whose answers are known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ups.eval.metrics import nrmse
from ups.eval.probabilistic import (EnsembleAccumulator, crps_ensemble, energy_spectrum, gaussian_samples,
                                    median_bandwidth, mmd, spectrum_distance, spread_skill_ratio)


def brute_crps(members: np.ndarray, truth: np.ndarray) -> np.ndarray:
    m = members.shape[0]
    skill = np.abs(members - truth).mean(0)
    pairs = sum(np.abs(members[i] - members[j]) for i in range(m) for j in range(m))
    return skill - pairs / (2 * m * m)


def test_the_crps_of_a_point_forecast_is_its_absolute_error():
    rng = np.random.default_rng(0)
    pred, truth = rng.normal(size=(1, 5, 7)), rng.normal(size=(5, 7))
    assert crps_ensemble(pred, truth) == pytest.approx(np.abs(pred[0] - truth))


def test_an_ensemble_of_identical_members_scores_its_absolute_error():
    truth = np.array([0.0, 1.0, -2.0])
    members = np.repeat(np.array([[0.5, 0.5, 0.5]]), 6, axis=0)
    assert crps_ensemble(members, truth) == pytest.approx([0.5, 0.5, 2.5])


def test_crps_of_two_members_around_the_truth():
    # members 0 and 1, truth 0: mean |x - y| = 0.5, sum_ij |x_i - x_j| = 2, 2 / (2 * 2^2) = 0.25
    assert crps_ensemble(np.array([[0.0], [1.0]]), np.array([0.0])) == pytest.approx([0.25])
    assert crps_ensemble(np.array([[0.0], [1.0]]), np.array([0.0]), fair=True) == pytest.approx([0.0])


def test_the_sorted_crps_equals_the_pairwise_definition():
    rng = np.random.default_rng(1)
    members, truth = rng.normal(size=(7, 4, 3)), rng.normal(size=(4, 3))
    assert crps_ensemble(members, truth) == pytest.approx(brute_crps(members, truth))


def test_a_large_gaussian_ensemble_matches_the_closed_form_crps():
    # CRPS(N(0, s^2), y = 0) = s (2 phi(0) - 1 / sqrt(pi)) (Gneiting & Raftery 2007)
    s = 2.0
    members = np.random.default_rng(2).normal(scale=s, size=(20000, 1))
    want = s * (2 / math.sqrt(2 * math.pi) - 1 / math.sqrt(math.pi))
    assert crps_ensemble(members, np.zeros(1))[0] == pytest.approx(want, rel=0.02)


def test_crps_refuses_an_ensemble_that_does_not_fit_the_truth():
    with pytest.raises(ValueError, match="shape"):
        crps_ensemble(np.zeros((3, 4)), np.zeros(5))


def test_members_and_truth_from_one_distribution_have_spread_skill_one():
    rng = np.random.default_rng(3)
    centre = rng.normal(size=(1, 4000, 1, 8))  # a different distribution per point, shared by truth and members
    members = centre[0] + rng.normal(size=(5, 4000, 1, 8))
    truth = centre[0, :, :, :] + rng.normal(size=(4000, 1, 8))
    acc = EnsembleAccumulator(steps=1, members=5)
    acc.add(members, truth)
    assert acc.overall()["spread_skill"] == pytest.approx(1.0, abs=0.05)


def test_an_under_dispersed_ensemble_is_over_confident():
    rng = np.random.default_rng(4)
    members, truth = 0.3 * rng.normal(size=(8, 500, 1, 4)), rng.normal(size=(500, 1, 4))
    acc = EnsembleAccumulator(steps=1, members=8)
    acc.add(members, truth)
    assert acc.overall()["spread_skill"] < 0.5


def test_spread_skill_is_undefined_for_one_member_or_no_error():
    assert math.isnan(spread_skill_ratio(1.0, 1.0, members=1))
    assert math.isnan(spread_skill_ratio(1.0, 0.0, members=4))


def test_one_member_accumulates_its_mae_as_crps_and_its_nrmse():
    rng = np.random.default_rng(5)
    pred, truth = rng.normal(size=(1, 6, 3, 16)), rng.normal(size=(6, 3, 16))
    acc = EnsembleAccumulator(steps=3, members=1)
    acc.add(pred[:, :2], truth[:2])
    acc.add(pred[:, 2:], truth[2:])
    assert acc.curve("crps") == pytest.approx(np.abs(pred[0] - truth).mean(axis=(0, 2)))
    assert acc.curve("nrmse_of_mean") == pytest.approx(nrmse(pred[0], truth).mean(axis=0))
    assert math.isnan(acc.overall()["spread_skill"])


def test_ensemble_scores_do_not_depend_on_batching():
    rng = np.random.default_rng(6)
    members, truth = rng.normal(size=(4, 9, 2, 8)), rng.normal(size=(9, 2, 8))
    whole, parts = EnsembleAccumulator(2, 4), EnsembleAccumulator(2, 4)
    whole.add(members, truth)
    for lo in range(0, 9, 4):
        parts.add(members[:, lo:lo + 4], truth[lo:lo + 4])
    assert whole.overall() == pytest.approx(parts.overall())


def test_the_energy_of_a_sine_sits_at_its_wavenumber():
    x = np.arange(64) / 64
    e = energy_spectrum(3.0 * np.sin(2 * np.pi * 5 * x)[None])
    assert e[5] == pytest.approx((3.0 / 2) ** 2)
    assert np.delete(e, 5).max() < 1e-20


def test_spectrum_distance_is_zero_for_equal_sets_and_counts_decades():
    fields = np.random.default_rng(7).normal(size=(10, 32))
    assert spectrum_distance(fields, fields) == 0.0
    assert spectrum_distance(10.0 * fields, fields) == pytest.approx(2.0)  # energy x 100 = two decades


def test_mmd_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(200, 4)), rng.normal(size=(200, 4))
    bw = median_bandwidth(x)
    assert mmd(x, x, bw) == pytest.approx(0.0, abs=1e-7)
    same, shifted = mmd(x, y, bw), mmd(x, y + 1.0, bw)
    assert same < 0.1 < shifted


def test_a_gaussian_fit_reproduces_the_mean_and_covariance_of_its_states():
    rng = np.random.default_rng(9)
    states = rng.normal(size=(50, 3)) @ np.array([[2.0, 0, 0], [1.0, 1.0, 0], [0, 0, 0.1]]) + 5.0
    draws = gaussian_samples(states, 200000, np.random.default_rng(10))
    assert draws.mean(0) == pytest.approx(states.mean(0), abs=0.02)
    assert np.cov(draws.T) == pytest.approx(np.cov(states.T), abs=0.03)
