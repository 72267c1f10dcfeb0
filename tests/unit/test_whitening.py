"""The steady prior's whitening: unit covariance where it models, each direction's own spread back.

States here are 2 tokens x 4 features: a strong rank-3 part plus a faint full-rank part
far below `GAUSSIAN_BELOW`, so the directions the prior models and those it leaves to the
Gaussian are known.
"""

from __future__ import annotations

import pytest
import torch

from ups.config import DiffusionConfig
from ups.models.denoiser import TokenDenoiser
from ups.models.diffusion import sample
from ups.models.whitening import GAUSSIAN_BELOW, StateWhitening

SD = 1.0
FAINT = 1e-6  # the faint part's spread, against O(1) for the strong part


def _states(n: int = 4000, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    spreads = torch.tensor([[2.0], [0.5], [0.1]], dtype=torch.float64)
    mix = torch.randn(3, 8, generator=gen, dtype=torch.float64) * spreads
    strong = torch.randn(n, 3, generator=gen, dtype=torch.float64) @ mix
    faint = torch.randn(n, 8, generator=gen, dtype=torch.float64) * FAINT
    return (strong + faint + 3.0).reshape(n, 2, 4)


def _cov(x: torch.Tensor) -> torch.Tensor:
    return torch.cov(x.reshape(len(x), -1).double().T)


def test_whitened_states_have_unit_covariance_where_modelled_and_zero_elsewhere():
    z = _states()
    white = StateWhitening.fit(z, SD)
    modelled = torch.eye(8, dtype=torch.float64) - white.gaussian
    assert int(torch.linalg.matrix_rank(modelled)) == 3
    torch.testing.assert_close(_cov(white.to_model(z)), modelled * SD**2, atol=1e-6, rtol=0)
    # The states come back to within the faint part they were not modelled in.
    assert float((white.to_latent(white.to_model(z)) - z).abs().max()) < 10 * FAINT


def test_the_gaussian_directions_come_back_at_their_own_spread():
    z = _states()
    white = StateWhitening.fit(z, SD)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    filled = white.to_model(z) + white.in_gaussian(noise) * SD  # what training shows the prior
    torch.testing.assert_close(_cov(filled), torch.eye(8, dtype=torch.float64) * SD**2, atol=0.1, rtol=0)
    # Mapped back, both parts have the states' covariance, the faint one included.
    back, cov = _cov(white.to_latent(filled)), _cov(z)
    faint = white.gaussian @ cov @ white.gaussian
    assert float(faint.diagonal().max()) < (GAUSSIAN_BELOW * 2.0) ** 2
    assert float((white.gaussian @ back @ white.gaussian).trace()) == pytest.approx(float(faint.trace()), rel=0.1)
    torch.testing.assert_close(back, cov, atol=1e-6, rtol=0)


def test_the_whitening_does_not_depend_on_the_basis_the_solver_picks():
    """ZCA is a function of the covariance: rotating the features rotates the matrices."""
    z = _states()
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    rotated = (z.reshape(len(z), 8) @ q).reshape(z.shape)
    a, b = StateWhitening.fit(z, SD), StateWhitening.fit(rotated, SD)
    for name in ("whiten", "colour", "gaussian"):
        torch.testing.assert_close(getattr(b, name), q.T @ getattr(a, name) @ q, atol=1e-6, rtol=1e-6)


def test_what_a_file_ships_rebuilds_the_whitening():
    white = StateWhitening.fit(_states(), SD)
    rebuilt = StateWhitening.from_colour(white.mean.float(), white.colour.float())
    torch.testing.assert_close(rebuilt.gaussian, white.gaussian, atol=1e-5, rtol=0)
    torch.testing.assert_close(rebuilt.whiten @ rebuilt.colour, white.whiten @ white.colour, atol=1e-4, rtol=0)


def test_an_untrained_prior_samples_the_gaussian_fit_of_its_states():
    """The zero-initialised denoiser is exact for whitened Gaussian data, and the sampler starts
    from the noised data's spread, so its samples have the states' covariance (a start at
    sigma_max alone gave 4/5 of it)."""
    z = _states()
    white = StateWhitening.fit(z, SD)
    torch.manual_seed(0)
    prior = TokenDenoiser(4, 2, 16, 1, 2, False, SD)
    w = sample(prior, None, (4000, 2, 4), 32, DiffusionConfig(), torch.Generator().manual_seed(3))
    back, cov = _cov(white.to_latent(w)), _cov(z)
    scale = cov.diagonal().sqrt()
    assert float(((back - cov) / torch.outer(scale, scale)).abs().max()) < 0.08
    assert float(white.to_latent(w).mean()) == pytest.approx(float(z.mean()), abs=0.1)
