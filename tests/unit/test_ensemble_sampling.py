"""The samplers evaluation draws residuals with: counted calls, seeded draws, member-major rollouts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ups.config import config_from_dict
from ups.eval.ensemble import STUDENT, TEACHER, _Cost, counted, roll_ensemble, residual_draws
from ups.errors import ConfigError
from ups.eval.loading import Models, Sampler
from ups.models.build import build_diffusion, build_student
from ups.models.diffusion import sample
from ups.models.latent import LatentCodec

SMALL = {"latent": {"dim": 4, "tokens": 4},
         "diffusion": {"hidden_dim": 16, "depth": 1, "num_heads": 2, "sample_steps": 3},
         "consistency": {"teacher_steps": 4, "student_steps": 2}}
CFG = config_from_dict(SMALL)


class Shift(nn.Module):
    """A stand-in operator: z -> z + 0.1, deterministic."""

    def forward(self, z):
        return z + 0.1


def samplers():
    torch.manual_seed(0)
    return {TEACHER: Sampler(TEACHER, build_diffusion(CFG).eval(), 2.0, {}),
            STUDENT: Sampler(STUDENT, build_student(CFG).eval(), 2.0, {})}


def test_each_draw_costs_the_evaluations_its_sampler_promises():
    s = samplers()
    draws, cond = residual_draws(CFG, s), torch.zeros(5, 4, 4)
    for name, expected in ((TEACHER, 2 * 3 - 1), (STUDENT, 2)):
        with counted(s[name].model) as calls:
            draws[name](cond, torch.Generator().manual_seed(0), 0)
        assert calls[0] == expected, name


def test_draws_repeat_with_the_seed_and_differ_between_members():
    s = samplers()
    draw = residual_draws(CFG, s)[TEACHER]
    cond = torch.zeros(6, 4, 4)
    a, b = draw(cond, torch.Generator().manual_seed(3), 0), draw(cond, torch.Generator().manual_seed(3), 0)
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1]), "each latent state gets its own noise"


def test_a_rollout_without_a_draw_is_the_operator_for_every_member():
    codec = LatentCodec(16, 4, 4)
    models = Models(codec=codec, operator=Shift())
    u0 = torch.randn(3, 16)
    fields = roll_ensemble(models, u0, members=2, steps=2, draw=None, gen=torch.Generator(), cost=_Cost())
    assert fields.shape == (2, 3, 2, 16)
    assert (fields[0] == fields[1]).all()
    want = codec.decode(codec.encode(u0) + 0.2).numpy()
    assert abs(fields[0, :, 1] - want).max() < 1e-5


def test_a_lead_time_residual_is_added_to_the_operators_own_rollout_and_never_rolled_on_from():
    codec = LatentCodec(16, 4, 4)
    models = Models(codec=codec, operator=Shift())
    u0 = torch.randn(3, 16)
    seen = []

    def draw(pred, gen, step):  # a residual that names its step
        seen.append((step, pred.clone()))
        return torch.full_like(pred, 10.0 * (step + 1))

    fed = roll_ensemble(models, u0, 2, 3, draw, torch.Generator(), _Cost(), feed_back=True)
    seen.clear()
    lead = roll_ensemble(models, u0, 2, 3, draw, torch.Generator(), _Cost(), feed_back=False)
    z0 = codec.encode(u0)
    for step in range(3):
        operator_rollout = z0 + 0.1 * (step + 1)
        assert [s for s, _ in seen][step] == step
        torch.testing.assert_close(seen[step][1][:3], operator_rollout)  # conditioned on the operator's own state
        want = codec.decode(operator_rollout + 10.0 * (step + 1)).numpy()
        assert abs(lead[0, :, step] - want).max() < 1e-4
    # fed back, the draws accumulate: 10 + 20 at the second step
    assert abs(fed[0, :, 1] - codec.decode(z0 + 0.2 + 30.0).numpy()).max() < 1e-3


def test_a_lead_time_draw_is_told_its_step_and_undone_with_that_steps_factor():
    from ups.models.denoiser import LeadCondition

    cfg = config_from_dict({**SMALL, "diffusion": {**SMALL["diffusion"], "train_rollout_steps": 3, "lead_time": True}})
    torch.manual_seed(0)
    model = build_diffusion(cfg).eval()
    torch.nn.init.normal_(model.out_proj.weight)  # F and the steps' offsets are zero at init: make them count
    torch.nn.init.normal_(model.lead_emb)
    assert model.lead_steps == 3 and model.describe()["lead_steps"] == 3
    scale = torch.tensor([1.0, 2.0, 4.0])
    draw = residual_draws(cfg, {TEACHER: Sampler(TEACHER, model, scale, {})})[TEACHER]
    cond = torch.randn(5, 4, 4)
    a = draw(cond, torch.Generator().manual_seed(1), 2)
    b = sample(model, LeadCondition(cond, torch.full((5,), 2)), cond.shape, cfg.diffusion.sample_steps,
               cfg.diffusion, torch.Generator().manual_seed(1)) / 4.0
    torch.testing.assert_close(a, b)
    with torch.no_grad():
        x, sigma = torch.randn(5, 4, 4), torch.full((5,), 0.5)
        steps = [model(x, sigma, LeadCondition(cond, torch.full((5,), k))) for k in range(3)]
    assert not torch.allclose(steps[0], steps[2]), "the step reaches the denoiser"
    with pytest.raises(ValueError, match="LeadCondition"):
        model(x, sigma, cond)
    with pytest.raises(ConfigError, match="trained for 3 rollout steps"):
        draw(cond, torch.Generator(), 3)


def test_spread_inflation_scales_the_draws_about_their_mean_over_members():
    codec = LatentCodec(16, 4, 4)
    models = Models(codec=codec, operator=Shift())
    u0 = torch.randn(2, 16)
    offsets = torch.tensor([1.0, 3.0, 8.0])  # three members' draws: mean 4

    def draw(pred, gen, step):
        rows = torch.arange(pred.shape[0]) // 2  # member-major: rows m * b + i
        return offsets[rows][:, None, None].expand_as(pred).clone()

    plain = roll_ensemble(models, u0, 3, 1, draw, torch.Generator(), _Cost(), feed_back=False)
    wide = roll_ensemble(models, u0, 3, 1, draw, torch.Generator(), _Cost(), feed_back=False, inflation=2.0)
    z = codec.encode(u0) + 0.1
    for m, want in enumerate([4 + 2 * (1 - 4), 4 + 2 * (3 - 4), 4 + 2 * (8 - 4)]):
        assert abs(wide[m, :, 0] - codec.decode(z + want).numpy()).max() < 1e-3
    assert abs(wide.mean(0) - plain.mean(0)).max() < 1e-3, "the ensemble mean does not move"
