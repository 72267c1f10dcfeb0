"""EDM loss, Heun sampler and consistency distillation: correctness, learning, RNG hygiene.

Gaussian data N(0, diag(SCALE^2)) has a closed-form optimal denoiser and ODE flow,
which gives exact references for the sampler, the loss floor and the consistency
function — and a perfectly trained teacher for distillation.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ups.config import ConsistencyConfig, DiffusionConfig
from ups.models.consistency import consistency_distill_loss, consistency_sample, consistency_sigmas
from ups.models.denoiser import TokenDenoiser
from ups.models.diffusion import edm_loss, karras_sigmas, sample, sample_mean, start_std
from ups.models.ema import EMA

CFG = DiffusionConfig()
CCFG = ConsistencyConfig()
SCALE = torch.tensor([0.2, 0.5, 1.0, 0.1])  # per feature; latents are [B, 2 tokens, 4]
SHAPE = (16, 2, 4)


@pytest.fixture(autouse=True)
def _one_thread():
    # These models are tiny: with several threads on a shared, busy CPU the OpenMP
    # workers mostly wait for each other (tenfold slower); one thread is fastest.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class GaussianDenoiser(nn.Module):
    """The exact E[x0 | x0 + sigma n = x] for x0 ~ N(0, diag(SCALE^2))."""

    sigma_data = 0.5

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))  # gives the samplers a device

    def forward(self, x, sigma, cond=None):
        var = SCALE**2
        return x * var / (var + sigma.reshape(-1, 1, 1) ** 2)


def _gaussian_batch(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(n, 2, 4, generator=gen) * SCALE


def _small_denoiser(parameterization: str = "edm") -> TokenDenoiser:
    torch.manual_seed(0)
    return TokenDenoiser(4, 2, 32, 1, 4, False, 0.5, parameterization, sigma_min=CFG.sigma_min)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- noise levels -------------------------------------------------------------


def test_karras_sigmas_descend_from_sigma_max_to_sigma_min_without_a_zero():
    s = karras_sigmas(8, 0.002, 2.0)
    assert s.shape == (8,) and s.dtype == torch.float32
    assert s[0].item() == pytest.approx(2.0) and s[-1].item() == pytest.approx(0.002)
    assert torch.all(s[1:] < s[:-1])
    assert karras_sigmas(1, 0.002, 2.0).tolist() == [pytest.approx(2.0)]


def test_student_sampling_levels_skip_sigma_min():
    assert consistency_sigmas(1, 0.002, 2.0) == [pytest.approx(2.0)]
    levels = consistency_sigmas(3, 0.002, 2.0)
    assert len(levels) == 3 and min(levels) > 0.002


# --- EDM loss -------------------------------------------------------------------


def _eval_edm_loss(model: nn.Module) -> float:
    gen = _gen(123)
    with torch.no_grad():
        return edm_loss(model, _gaussian_batch(1024, gen), None, gen, CFG).item()


def test_edm_loss_training_approaches_the_exact_denoisers_loss():
    den = _small_denoiser()
    floor, before = _eval_edm_loss(GaussianDenoiser()), _eval_edm_loss(den)
    opt = torch.optim.Adam(den.parameters(), lr=2e-3)
    gen = _gen(0)
    for _ in range(150):
        loss = edm_loss(den, _gaussian_batch(64, gen), None, gen, CFG)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _eval_edm_loss(den)
    assert after - floor < 0.4 * (before - floor)


def test_edm_loss_uses_only_the_passed_generator():
    den = _small_denoiser()
    x = _gaussian_batch(8, _gen(1))
    state = torch.get_rng_state()
    first = edm_loss(den, x, None, _gen(5), CFG)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(first, edm_loss(den, x, None, _gen(5), CFG))
    assert not torch.equal(first, edm_loss(den, x, None, _gen(6), CFG))


# --- samplers -------------------------------------------------------------------


def test_heun_sampler_follows_the_exact_probability_flow_to_second_order():
    start = torch.randn(SHAPE, generator=_gen(3)) * start_std(GaussianDenoiser(), CFG.sigma_max)
    exact = start * SCALE / (SCALE**2 + CFG.sigma_max**2).sqrt()
    runs = [sample(GaussianDenoiser(), None, SHAPE, n, CFG, _gen(3)) for n in (16, 32)]
    errors = [(x / exact - 1).abs().max() for x in runs]
    assert errors[1] < 0.01
    assert errors[1] < errors[0] / 3  # Heun: halving the step cuts the error about 4x


class UnitGaussianDenoiser(nn.Module):
    """The exact denoiser of x0 ~ N(0, I), the spread it declares as sigma_data (the steady prior's)."""

    sigma_data = 1.0

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x, sigma, cond=None):
        return x / (1 + sigma.reshape(-1, 1, 1) ** 2)


def test_samplers_end_with_the_datas_variance_when_sigma_max_is_not_far_above_it():
    """sigma_max = 2 against sigma_data = 1: a start from sigma_max alone ended at 4/5 of the variance."""
    for draw in (lambda: sample(UnitGaussianDenoiser(), None, (4000, 2, 4), 32, CFG, _gen(5)),
                 lambda: consistency_sample(UnitGaussianFlow(), None, (4000, 2, 4), 1, CFG, _gen(5))):
        assert float(draw().var()) == pytest.approx(1.0, rel=0.05)


class UnitGaussianFlow(UnitGaussianDenoiser):
    """The exact consistency function of x0 ~ N(0, I): the ODE's endpoint, x / sqrt(1 + sigma^2)."""

    def forward(self, x, sigma, cond=None):
        return x / (1 + sigma.reshape(-1, 1, 1) ** 2).sqrt()


def test_sampler_is_a_function_of_the_generator_seed_and_leaves_the_global_rng_alone():
    den = _small_denoiser()
    state = torch.get_rng_state()
    a = sample(den, None, SHAPE, 4, CFG, _gen(11))
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, sample(den, None, SHAPE, 4, CFG, _gen(11)))
    assert not torch.equal(a, sample(den, None, SHAPE, 4, CFG, _gen(12)))


def test_sample_mean_is_deterministic_and_near_the_conditional_mean():
    est = sample_mean(GaussianDenoiser(), None, SHAPE, CFG)
    assert torch.equal(est, torch.zeros(SHAPE))  # E[x0] = 0 for the centred Gaussian
    den = _small_denoiser()
    assert torch.equal(sample_mean(den, None, SHAPE, CFG), sample_mean(den, None, SHAPE, CFG))


# --- consistency distillation ---------------------------------------------------


def _exact_consistency_error(student: nn.Module) -> float:
    """Mean squared distance to the true ODE endpoint x * sqrt(v + s_min^2) / sqrt(v + s^2)."""
    gen = _gen(9)
    x0 = _gaussian_batch(512, gen)
    sig = karras_sigmas(CCFG.teacher_steps, CFG.sigma_min, CFG.sigma_max)
    s = sig[torch.randint(0, len(sig), (512,), generator=gen)][:, None, None]
    x = x0 + s * torch.randn(x0.shape, generator=gen)
    exact = x * ((SCALE**2 + CFG.sigma_min**2) / (SCALE**2 + s**2)).sqrt()
    with torch.no_grad():
        return torch.mean((student(x, s.reshape(-1)) - exact) ** 2).item()


def _eval_cd_loss(student: nn.Module) -> float:
    gen = _gen(7)
    with torch.no_grad():
        x0 = _gaussian_batch(512, gen)
        return consistency_distill_loss(student, student, GaussianDenoiser(), x0, None, gen, CFG, CCFG).item()


def test_distillation_from_an_exact_teacher_lowers_the_loss_and_learns_the_ode_endpoint():
    student = _small_denoiser("consistency")
    target = EMA(student, decay=0.95)
    opt = torch.optim.Adam(student.parameters(), lr=2e-3)
    before = (_eval_cd_loss(student), _exact_consistency_error(student))
    gen = _gen(0)
    for _ in range(150):
        x0 = _gaussian_batch(64, gen)
        loss = consistency_distill_loss(student, target.module, GaussianDenoiser(), x0, None, gen, CFG, CCFG)
        opt.zero_grad()
        loss.backward()
        opt.step()
        target.update(student)
    after = (_eval_cd_loss(student), _exact_consistency_error(student))
    assert after[0] < 0.3 * before[0]
    assert after[1] < 0.3 * before[1]


def test_distillation_loss_trains_only_the_student_and_uses_only_the_generator():
    student, target, teacher = (_small_denoiser(p) for p in ("consistency", "consistency", "edm"))
    x0 = _gaussian_batch(8, _gen(1))
    state = torch.get_rng_state()
    loss = consistency_distill_loss(student, target, teacher, x0, None, _gen(4), CFG, CCFG)
    assert torch.equal(state, torch.get_rng_state())
    loss.backward()
    assert all(p.grad is None for p in (*target.parameters(), *teacher.parameters()))
    assert any(p.grad is not None for p in student.parameters())
    assert torch.equal(loss, consistency_distill_loss(student, target, teacher, x0, None, _gen(4), CFG, CCFG))


def test_consistency_sampler_is_a_function_of_the_generator_seed():
    student = _small_denoiser("consistency")
    state = torch.get_rng_state()
    a = consistency_sample(student, None, SHAPE, CCFG.student_steps, CFG, _gen(21))
    assert torch.equal(state, torch.get_rng_state())
    assert a.shape == SHAPE
    assert torch.equal(a, consistency_sample(student, None, SHAPE, CCFG.student_steps, CFG, _gen(21)))
    assert not torch.equal(a, consistency_sample(student, None, SHAPE, CCFG.student_steps, CFG, _gen(22)))
