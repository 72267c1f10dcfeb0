"""Training through several rollout steps: the sequences it reads and the loss it takes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.unit.test_pdebench_reader import T, X, data_for, make_file
from ups.data.pdebench import open_split
from ups.models.latent import LatentCodec
from ups.training.batches import LatentSource
from ups.training.tasks import rollout_loss


class Identity(LatentCodec):
    """Latents equal to the field, so a test can read off which snapshot it got."""

    def encode(self, u):
        return u.unsqueeze(-2)

    def decode(self, z):
        return z.squeeze(-2)


@pytest.mark.parametrize("preload", [True, False])
def test_sequences_hold_every_stride_th_snapshot_after_the_start(tmp_path, preload):
    path = tmp_path / "f.h5"
    tensor = make_file(path)
    split = open_split(data_for(path), "train")
    src = LatentSource(split, Identity(X, 1, X), torch.device("cpu"), stride=2, preload=preload, horizon=3)
    assert src.n_times == T - 6 and src.n_items == len(split) * (T - 6)
    idx = torch.tensor([0, src.n_times + 1, src.n_items - 1])
    seq = src.batch(idx)
    assert len(seq) == 4
    for (traj, t), row in zip([(0, 0), (1, 1), (len(split) - 1, src.n_times - 1)], range(3)):
        for k in range(4):
            np.testing.assert_array_equal(seq[k][row, 0].numpy(), tensor[traj, t + 2 * k])


def test_one_step_rollout_loss_is_the_one_step_mse():
    model = torch.nn.Linear(4, 4)
    z0, z1 = torch.randn(8, 3, 4), torch.randn(8, 3, 4)
    assert rollout_loss(model, (z0, z1)).item() == pytest.approx(torch.nn.functional.mse_loss(model(z0), z1).item())


def test_rollout_loss_feeds_each_prediction_back_and_averages_the_steps():
    model = torch.nn.Linear(4, 4)
    z = [torch.randn(8, 3, 4) for _ in range(4)]
    p1 = model(z[0])
    p2 = model(p1)
    p3 = model(p2)
    want = sum(torch.nn.functional.mse_loss(p, t) for p, t in zip((p1, p2, p3), z[1:])) / 3
    got = rollout_loss(model, tuple(z))
    assert got.item() == pytest.approx(want.item())
    got.backward()
    assert model.weight.grad is not None and model.weight.grad.abs().sum() > 0


def test_the_rollout_length_is_part_of_the_operators_identity_and_its_default_changes_nothing():
    from ups import stages
    from ups.config import config_from_dict
    from ups.identity import stage_identity

    op = stages.get("operator")
    one, three = (stage_identity(config_from_dict({"operator": {"train_rollout_steps": k}}), op) for k in (1, 3))
    assert three["operator.train_rollout_steps"] == 3
    assert "operator.train_rollout_steps" not in one  # runs made before the setting existed stay current
    assert {k: v for k, v in three.items() if k != "operator.train_rollout_steps"} == one


def test_the_residual_along_a_rollout_continues_from_the_operators_own_predictions():
    from ups.training.tasks import rolled_residuals

    def operator(z):
        return 2 * z

    z = [torch.randn(5, 3, 4) for _ in range(3)]
    residual, pred = rolled_residuals(operator, tuple(z))
    torch.testing.assert_close(pred, torch.cat([2 * z[0], 4 * z[0]]))
    torch.testing.assert_close(residual, torch.cat([z[1] - 2 * z[0], z[2] - 4 * z[0]]))
    one_residual, one_pred = rolled_residuals(operator, tuple(z[:2]))  # a pair: the one-step residual
    torch.testing.assert_close(one_pred, 2 * z[0])
    torch.testing.assert_close(one_residual, z[1] - 2 * z[0])


def test_the_residuals_rollout_length_is_its_stages_identity_and_its_default_changes_nothing():
    from ups import stages
    from ups.config import config_from_dict
    from ups.identity import stage_identity

    key = "diffusion.train_rollout_steps"
    for name, shaped in [("diff_residual", True), ("consistency_distill", True), ("operator", False)]:
        spec = stages.get(name)
        one, four = (stage_identity(config_from_dict({"diffusion": {"train_rollout_steps": k}}), spec) for k in (1, 4))
        assert key not in one  # runs made before the setting existed stay current
        assert (four.get(key) == 4) is shaped
        assert {k: v for k, v in four.items() if k != key} == one


def test_lead_items_are_each_sequence_at_each_step_of_the_operators_rollout(tmp_path):
    from ups.training.tasks import RolledLeadItems, residual_target

    path = tmp_path / "f.h5"
    tensor = make_file(path)
    split = open_split(data_for(path), "train")
    seq = LatentSource(split, Identity(X, 1, X), torch.device("cpu"), stride=1, preload=True, horizon=3)

    def operator(z):
        return 0.5 * z

    items = RolledLeadItems(seq, operator)
    assert items.n_items == 3 * seq.n_items
    idx = torch.tensor([0, 1, 2, 3 * seq.n_times + 5])  # sequence 0 at steps 0..2, then sequence n_times+1 at 2
    residual, pred, step = items.batch(idx)
    assert step.tolist() == [0, 1, 2, 2]
    for row, (traj, t, k) in enumerate([(0, 0, 0), (0, 0, 1), (0, 0, 2), (1, 1, 2)]):
        start = torch.from_numpy(tensor[traj, t]).float()
        want_pred = start * 0.5 ** (k + 1)
        torch.testing.assert_close(pred[row, 0], want_pred)
        torch.testing.assert_close(residual[row, 0], torch.from_numpy(tensor[traj, t + k + 1]).float() - want_pred)
    x0, cond = residual_target(operator, (residual, pred, step), torch.tensor([1.0, 2.0, 4.0]))
    torch.testing.assert_close(x0, residual * torch.tensor([1.0, 2.0, 4.0, 4.0])[:, None, None])
    assert torch.equal(cond.step, step) and torch.equal(cond.pred, pred)
