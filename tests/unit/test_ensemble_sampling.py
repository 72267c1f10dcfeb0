"""The samplers evaluation draws residuals with: counted calls, seeded draws, member-major rollouts."""

from __future__ import annotations

import torch
from torch import nn

from ups.config import config_from_dict
from ups.eval.ensemble import STUDENT, TEACHER, _Cost, counted, roll_ensemble, residual_draws
from ups.eval.loading import Models, Sampler
from ups.models.build import build_diffusion, build_student
from ups.models.latent import LatentCodec

CFG = config_from_dict({"latent": {"dim": 4, "tokens": 4}, "diffusion": {"hidden_dim": 16, "depth": 1, "num_heads": 2,
                                                                        "sample_steps": 3},
                        "consistency": {"teacher_steps": 4, "student_steps": 2}})


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
            draws[name](cond, torch.Generator().manual_seed(0))
        assert calls[0] == expected, name


def test_draws_repeat_with_the_seed_and_differ_between_members():
    s = samplers()
    draw = residual_draws(CFG, s)[TEACHER]
    cond = torch.zeros(6, 4, 4)
    a, b = draw(cond, torch.Generator().manual_seed(3)), draw(cond, torch.Generator().manual_seed(3))
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
