"""Small guards, without a training run: the non-finite loss guard and the remote-identity check."""

import pytest
import torch

from ups.errors import RemoteError
from ups.remote.store import open_store
from ups.remote.takeover import check_remote_target, different_run
from ups.training.guard import FiniteGuard, NonFiniteLoss


def test_the_first_non_finite_step_is_named_when_the_guard_is_checked():
    guard = FiniteGuard("operator", torch.device("cpu"))
    guard.observe(1, torch.tensor(0.5), torch.tensor(1.0))
    guard.check(0)
    guard.observe(2, torch.tensor(float("nan")), torch.tensor(1.0))
    guard.observe(3, torch.tensor(float("inf")), torch.tensor(1.0))
    with pytest.raises(NonFiniteLoss, match=r"at step 2 .*last finite state \(step 1\)") as e:
        guard.check(1)
    assert e.value.exit_code == 1


def test_an_infinite_gradient_norm_counts_as_non_finite():
    guard = FiniteGuard("operator", torch.device("cpu"))
    guard.observe(7, torch.tensor(0.5), torch.tensor(float("inf")))
    with pytest.raises(NonFiniteLoss, match="at step 7"):
        guard.check(4)


def test_non_finite_weights_are_refused_even_with_finite_losses():
    guard = FiniteGuard("steady_prior", torch.device("cpu"))
    with pytest.raises(NonFiniteLoss, match="weights hold NaN/Inf"):
        guard.check(0, [torch.ones(3), torch.tensor([1.0, float("nan")])])


def test_a_runaway_loss_warns_once():
    said = []
    guard = FiniteGuard("operator", torch.device("cpu"), said.append)
    for step, loss in enumerate([0.5, 0.1, 50.0, 200.0, 5000.0], start=1):
        guard.watch_growth(step, loss)
    assert len(said) == 1 and "grew from 0.1 to 200 by step 4" in said[0]


STATUS_A = {"created_at": "2026-01-01T00:00:00Z"}
STATUS_B = {"created_at": "2026-02-02T00:00:00Z"}


@pytest.mark.parametrize("local, local_meta, remote, remote_meta, other", [
    (STATUS_A, {}, None, None, False),  # an empty prefix
    (STATUS_A, {}, STATUS_A, {}, False),  # our own copy
    (STATUS_A, {}, STATUS_B, {}, True),  # another run
    (None, None, STATUS_A, {}, True),  # a fresh directory and a remote that holds a run
    (STATUS_A, {"training_wandb": {"id": "aaa"}}, STATUS_A, {"training_wandb": {"id": "bbb"}}, True),
])
def test_a_remote_holds_another_run_when_its_identity_differs(local, local_meta, remote, remote_meta, other):
    assert (different_run(local, local_meta, remote, remote_meta) is not None) == other


def test_a_remote_inside_or_around_the_checkpoint_dir_is_refused(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints"
    ckpt.mkdir(parents=True)
    for uri in (str(ckpt), f"file://{ckpt / 'copy'}", str(tmp_path / "run")):
        with pytest.raises(RemoteError, match="checkpoint directory"):
            check_remote_target(open_store(uri), ckpt, take_over=True)
    check_remote_target(open_store(str(tmp_path / "elsewhere")), ckpt, take_over=False)
