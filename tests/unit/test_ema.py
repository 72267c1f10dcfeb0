"""EMA of model weights: warm-up, convergence, exact state round trip, no host sync."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ups.models.ema import EMA


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("count", torch.zeros(()))


def _net(seed: int) -> _Net:
    torch.manual_seed(seed)
    return _Net()


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_ema_of_a_constant_model_converges_to_it():
    model = _net(0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    for _ in range(300):
        ema.update(model)
    assert torch.allclose(_flat(ema.module), _flat(model), atol=1e-6)


def test_first_updates_use_the_warm_up_decay():
    model = _net(0)
    ema = EMA(model, decay=0.999)
    start = _flat(ema.module).clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)  # decay min(0.999, 1/10) = 0.1: moves 90% of the way
    assert torch.allclose(_flat(ema.module), start + 0.9, atol=1e-6)
    assert ema.num_updates == 1 and ema.current_decay() == pytest.approx(2 / 11)


def test_decay_is_capped_at_the_configured_value():
    ema = EMA(_net(0), decay=0.5)
    ema.num_updates = 1000
    assert ema.current_decay() == 0.5


def test_buffers_are_copied_not_averaged():
    model = _net(0)
    ema = EMA(model, decay=0.99)
    model.count.fill_(7.0)
    ema.update(model)
    assert ema.module.count.item() == 7.0


def test_ema_copy_is_frozen_and_in_eval_mode():
    model = _net(0).train()
    ema = EMA(model, decay=0.9)
    assert not ema.module.training
    assert not any(p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_state_dict_round_trip_continues_identically():
    model, other = _net(0), _net(1)
    ema = EMA(model, decay=0.95)
    for _ in range(5):
        ema.update(other)
    restored = EMA(_net(2), decay=0.1)
    restored.load_state_dict(ema.state_dict())
    assert (restored.decay, restored.num_updates) == (0.95, 5)
    ema.update(model)
    restored.update(model)
    assert torch.equal(_flat(restored.module), _flat(ema.module))


def test_update_never_reads_a_tensor_back_to_the_host(monkeypatch):
    model = _net(0)
    ema = EMA(model, decay=0.9)

    def no_sync(*args, **kwargs):
        raise AssertionError("EMA.update synchronised with the device")

    monkeypatch.setattr(torch.Tensor, "item", no_sync)
    monkeypatch.setattr(torch.Tensor, "tolist", no_sync)
    monkeypatch.setattr(torch.Tensor, "cpu", no_sync)
    ema.update(model)
    assert ema.num_updates == 1


class _Compiled(nn.Module):
    """Stands in for torch.compile's OptimizedModule, which keeps the model as `_orig_mod`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self._orig_mod = model


def test_ema_unwraps_a_compiled_model():
    model = _net(0)
    ema = EMA(_Compiled(model), decay=0.9)
    assert isinstance(ema.module, _Net)
    ema.update(_Compiled(model))
    assert torch.allclose(_flat(ema.module), _flat(model))


def test_decay_outside_zero_one_raises():
    with pytest.raises(ValueError, match="ema_decay"):
        EMA(_net(0), decay=1.0)
