"""The operator, the token denoiser and the builders: shapes, init, parameterisations."""

from __future__ import annotations

import json

import pytest
import torch

from ups.config import Config, PDETConfig, config_from_dict
from ups.models import (
    architecture,
    build_diffusion,
    build_operator,
    build_steady_prior,
    build_student,
    param_count,
)
from ups.models.denoiser import TokenDenoiser
from ups.models.diffusion import edm_loss_given_noise
from ups.models.operator import LatentOperator

@pytest.fixture(autouse=True)
def _one_thread():
    # These models are tiny: with several threads on a shared, busy CPU the OpenMP
    # workers mostly wait for each other (tenfold slower); one thread is fastest.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


BIG = {
    "latent": {"dim": 32, "tokens": 32},
    "operator": {"pdet": {"hidden_dim": 256, "depths": [2, 2, 2], "num_heads": 8}},
}


def _latents(b: int, tokens: int, dim: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, tokens, dim, generator=torch.Generator().manual_seed(seed))


# --- operator -------------------------------------------------------------


def test_operator_maps_latents_to_latents_of_the_same_shape():
    op = LatentOperator(PDETConfig(hidden_dim=32, depths=[1, 2], num_heads=4), latent_dim=8, tokens=16)
    assert op(_latents(3, 16, 8)).shape == (3, 16, 8)


def test_untrained_operator_is_the_identity_map():
    op = build_operator(Config())
    z = _latents(4, 16, 16)
    assert torch.equal(op(z), z)


def test_operator_builds_one_level_per_depth_with_int_or_per_level_heads():
    same = LatentOperator(PDETConfig(hidden_dim=32, depths=[1, 2, 1], num_heads=4), 8, 4)
    per_level = LatentOperator(PDETConfig(hidden_dim=32, depths=[1, 2, 1], num_heads=[2, 4, 8]), 8, 4)
    assert [len(level) for level in same.levels] == [1, 2, 1]
    assert [level[0].num_heads for level in same.levels] == [4, 4, 4]
    assert [level[0].num_heads for level in per_level.levels] == [2, 4, 8]
    assert per_level(_latents(2, 4, 8)).shape == (2, 4, 8)


def test_operator_rejects_latents_of_another_shape():
    op = build_operator(Config())
    with pytest.raises(ValueError, match=r"\[16, 16\]"):
        op(_latents(2, 8, 16))


def test_operator_runs_under_bf16_autocast_and_returns_the_input_dtype():
    op = build_operator(Config())
    z = _latents(2, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = op(z)
    assert out.dtype == torch.float32 and out.shape == z.shape


def test_adam_teaches_the_operator_a_token_shift_map():
    torch.manual_seed(0)
    op = LatentOperator(PDETConfig(hidden_dim=32, depths=[1], num_heads=4), latent_dim=4, tokens=8)
    opt = torch.optim.Adam(op.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    z_eval = torch.randn(256, 8, 4, generator=gen)

    def eval_loss() -> float:
        with torch.no_grad():
            return torch.mean((op(z_eval) - z_eval.roll(1, dims=-2)) ** 2).item()

    before = eval_loss()
    for _ in range(100):
        z = torch.randn(64, 8, 4, generator=gen)
        loss = torch.mean((op(z) - z.roll(1, dims=-2)) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # The identity start scores 2 (z - roll(z) has variance 2); learning to drop
    # the identity path alone halves it, the exact routing comes later.
    assert eval_loss() < 0.5 * before


# --- denoiser -------------------------------------------------------------


def _denoiser(conditional: bool, parameterization: str = "edm") -> TokenDenoiser:
    return TokenDenoiser(8, 4, 32, 1, 4, conditional, 0.5, parameterization, sigma_min=0.002)


def test_conditional_denoiser_needs_a_condition_and_unconditional_refuses_one():
    x = _latents(2, 4, 8)
    sigma = torch.ones(2)
    assert _denoiser(True)(x, sigma, x).shape == x.shape
    assert _denoiser(False)(x, sigma).shape == x.shape
    with pytest.raises(ValueError, match="needs a condition"):
        _denoiser(True)(x, sigma)
    with pytest.raises(ValueError, match="unconditional"):
        _denoiser(False)(x, sigma, x)


def test_edm_coefficients_follow_karras_table_1():
    den = _denoiser(False)
    sigma = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = den.coefficients(sigma)
    sd = 0.5
    assert torch.allclose(c_skip, sd**2 / (sigma**2 + sd**2))
    assert torch.allclose(c_out, sigma * sd / (sigma**2 + sd**2).sqrt())
    assert torch.allclose(c_in, 1 / (sigma**2 + sd**2).sqrt())
    assert torch.allclose(c_noise, sigma.log() / 4)


def test_untrained_edm_denoiser_returns_c_skip_times_its_input():
    den = _denoiser(False)
    x, sigma = _latents(3, 4, 8), torch.tensor([0.1, 1.0, 2.0])
    assert torch.allclose(den(x, sigma), x * (0.25 / (sigma**2 + 0.25))[:, None, None])


def test_student_is_exactly_the_identity_at_sigma_min():
    teacher = _denoiser(True)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # a non-trivial F
    student = _denoiser(True, "consistency")
    student.load_state_dict(teacher.state_dict())
    x, cond = _latents(3, 4, 8), _latents(3, 4, 8, seed=1)
    sigma_min = torch.full((3,), 0.002)
    assert torch.equal(student(x, sigma_min, cond), x)
    assert not torch.equal(student(x, sigma_min * 10, cond), x)


def test_denoiser_runs_under_bf16_autocast():
    den = _denoiser(True)
    x = _latents(2, 4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = den(x, torch.ones(2), x)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_unknown_parameterization_raises():
    with pytest.raises(ValueError, match="parameterization"):
        _denoiser(False, "ddpm")


# --- builders ---------------------------------------------------------------


def test_student_shares_the_diffusion_models_parameter_names_and_shapes():
    cfg = Config()
    teacher, student = build_diffusion(cfg), build_student(cfg)
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(teacher) == shapes(student)
    student.load_state_dict(teacher.state_dict())  # strict


def test_architecture_is_json_and_builds_nothing_so_the_global_rng_is_untouched():
    state = torch.get_rng_state()
    arch = architecture(config_from_dict(BIG))
    assert torch.equal(state, torch.get_rng_state())
    assert json.loads(json.dumps(arch)) == arch
    assert arch["operator"]["num_heads"] == [8, 8, 8]
    assert arch["student"]["parameterization"] == "consistency"
    assert arch["steady_prior"]["conditional"] is False


def test_architecture_changes_with_a_shape_setting_only():
    base = architecture(Config())
    assert architecture(config_from_dict({"training": {"learning_rate": 0.5}})) == base
    assert architecture(config_from_dict({"diffusion": {"hidden_dim": 128}})) != base


def test_forward_passes_and_the_noise_free_loss_trace_into_one_graph():
    # backend="eager" runs dynamo's tracing (which rejects .item(), data-dependent
    # ifs and other graph breaks under fullgraph=True) without a C++ toolchain.
    cfg = Config()
    z, sigma = _latents(2, 16, 16), torch.tensor([0.1, 1.0])
    op, den = build_operator(cfg), build_diffusion(cfg)
    compile_ = lambda f: torch.compile(f, backend="eager", fullgraph=True)  # noqa: E731
    assert torch.equal(compile_(op)(z), op(z))
    assert torch.allclose(compile_(den)(z, sigma, z), den(z, sigma, z))
    prior = build_steady_prior(cfg)
    assert torch.allclose(compile_(prior)(z, sigma), prior(z, sigma))
    loss = compile_(lambda x, c, s, n: edm_loss_given_noise(den, x, c, s, n))
    assert torch.allclose(loss(z, z, sigma, z), edm_loss_given_noise(den, z, z, sigma, z))


@pytest.mark.parametrize("raw", [{}, BIG])
def test_every_model_builds_and_runs_for_the_default_and_the_large_config(raw):
    cfg = config_from_dict(raw)
    tokens, dim = cfg.latent.tokens, cfg.latent.dim
    z = _latents(2, tokens, dim)
    sigma = torch.ones(2)
    assert build_operator(cfg)(z).shape == z.shape
    assert build_diffusion(cfg)(z, sigma, z).shape == z.shape
    assert build_student(cfg)(z, sigma, z).shape == z.shape
    assert build_steady_prior(cfg)(z, sigma).shape == z.shape


def test_param_count_counts_every_parameter():
    op = LatentOperator(PDETConfig(hidden_dim=8, depths=[1], num_heads=2, mlp_ratio=1.0), 2, 3)
    # in 2*8+8, pos 3*8, block: 2 norms 4*8, qkv 8*24+24, proj 8*8+8, mlp 2*(8*8+8), out norm 2*8, out 8*2+2
    expected = 24 + 24 + (32 + 216 + 72 + 144) + 16 + 18
    assert param_count(op) == expected
