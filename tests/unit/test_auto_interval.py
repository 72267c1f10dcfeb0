"""`checkpoint.every_seconds: auto`: the Young/Daly rule, its prior, its bounds, its description."""

from __future__ import annotations

import math

import pytest

from ups.config import config_from_dict
from ups.errors import ConfigError
from ups.resume.interval import (AdaptiveSavePolicy, IntervalInputs, auto_interval, estimate_mtbf, expected_waste,
                                 goodput_ceiling, young_daly_seconds)


def inputs(**kw) -> IntervalInputs:
    base = dict(save_cost_s=0.5, failures=0, exposure_s=0.0, prior_mtbf_s=3600.0, min_failures=2, min_s=10.0,
                max_s=1800.0)
    return IntervalInputs(**{**base, **kw})


def test_interval_is_the_square_root_of_twice_cost_times_mtbf():
    assert young_daly_seconds(0.5, 3600.0) == pytest.approx(60.0)
    got = auto_interval(inputs())
    assert got.seconds == pytest.approx(60.0) and got.bound is None and got.mtbf_from == "prior"


def test_the_rule_minimises_the_first_order_waste():
    c, m = 0.2, 5000.0
    best = young_daly_seconds(c, m)
    for other in (best * 0.8, best * 1.25):
        assert expected_waste(best, c, 0.0, m) < expected_waste(other, c, 0.0, m)


def test_prior_mtbf_is_used_until_enough_failures_are_seen():
    assert estimate_mtbf(1, 100.0, 3600.0, 2) == (3600.0, "prior")
    assert estimate_mtbf(2, 100.0, 3600.0, 2) == (50.0, "observed")
    assert estimate_mtbf(0, 100.0, 3600.0, 1) == (3600.0, "prior")


def test_observed_failures_shorten_the_interval():
    calm = auto_interval(inputs(failures=1, exposure_s=7200.0))
    stormy = auto_interval(inputs(failures=4, exposure_s=800.0))  # MTBF 200 s
    assert stormy.seconds == pytest.approx(max(10.0, math.sqrt(2 * 0.5 * 200.0)))
    assert stormy.seconds < calm.seconds and stormy.mtbf_from == "observed"


def test_interval_is_clipped_to_the_configured_bounds():
    low = auto_interval(inputs(save_cost_s=0.001))
    high = auto_interval(inputs(save_cost_s=50.0, prior_mtbf_s=1e6))
    assert (low.seconds, low.bound) == (10.0, "min")
    assert (high.seconds, high.bound) == (1800.0, "max")


def test_without_a_measured_save_the_interval_is_the_minimum():
    got = auto_interval(inputs(save_cost_s=None))
    assert (got.seconds, got.bound) == (10.0, "min")
    assert "until a save is measured" in got.describe()


def test_description_names_every_input():
    text = auto_interval(inputs(failures=3, exposure_s=3000.0)).describe()
    assert "500.0 ms per save" in text and "3 failures in 50.0 min" in text and "observed" in text


def test_ceiling_is_below_one_minus_restart_share_and_above_any_fixed_interval():
    c, r, m = 0.3, 20.0, 3000.0
    ceiling = goodput_ceiling(c, r, m)
    assert ceiling < 1 - r / m
    for t in (5.0, 30.0, 300.0):
        assert 1 - expected_waste(t, c, r, m) <= ceiling + 1e-12


def test_adaptive_policy_asks_its_interval_at_each_step():
    now = {"t": 100.0}
    policy = AdaptiveSavePolicy(every_steps=None, every_seconds=None, interval=lambda: now["t"])
    assert not policy.should_save(5, 0, 60.0)
    now["t"] = 30.0
    assert policy.should_save(5, 0, 60.0)
    assert not policy.should_save(5, 5, 60.0)  # already saved at this step


def test_config_accepts_auto_and_rejects_inverted_bounds():
    cfg = config_from_dict({"checkpoint": {"every_seconds": "auto", "auto": {"min_seconds": 5}}})
    assert cfg.checkpoint.every_seconds == "auto" and cfg.checkpoint.auto.min_seconds == 5
    assert config_from_dict({"checkpoint": {"every_seconds": 12.5}}).checkpoint.every_seconds == 12.5
    with pytest.raises(ConfigError, match="every_seconds"):
        config_from_dict({"checkpoint": {"every_seconds": "sometimes"}})
    with pytest.raises(ConfigError, match="min_seconds"):
        config_from_dict({"checkpoint": {"auto": {"min_seconds": 100, "max_seconds": 10}}})
