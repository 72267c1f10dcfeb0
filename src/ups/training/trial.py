"""Would this saved state restore? Find out on a scratch copy before the stage trusts it.

A state file can load (right format, right fingerprint) and still not restore: a tensor
of another shape or dtype, a missing key, an optimizer state for other parameters. Found
only once the real trainer restores it, that crashes every resume, although an older
valid state sits beside it. So the state is first restored into a throwaway trainer,
on the stage's own device (a CUDA noise generator's state only fits a CUDA generator),
by the very `Trainer._restore` the stage will run; the global RNGs are put back
afterwards, since restoring sets them. The scratch copy costs one model, its EMA and
optimizer state of memory on that device, once per resume, freed before training.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

import torch

from ups.config import ResolvedStage
from ups.errors import one_line
from ups.resume.policy import SavePolicy
from ups.resume.rng import capture_rng, restore_rng
from ups.resume.signals import StopRequest
from ups.training.checkpointer import Checkpointer
from ups.parallel import Solo
from ups.training.loop import StageTraining, StageTask, Trainer
from ups.training.metrics import SilentLog

CPU = torch.device("cpu")


def restore_problem(task: StageTask, name: str, index: int, settings: ResolvedStage,
                    state: dict[str, Any], device: torch.device = CPU) -> Optional[str]:
    """Why `state` would not restore into `task`'s model (one line), or None when it would."""
    wrong = _tensor_mismatch(task.model.state_dict(), state.get("model"), "model")
    if wrong:
        return wrong
    scratch = StageTask(model=copy.deepcopy(task.model).to(device), loss=task.loss, train=task.train, val=task.val)
    training = StageTraining(name=name, index=index, settings=settings, fingerprint="", seed=0, device=device,
                             checkpointer=Checkpointer(SavePolicy(None, None), Solo(device)), stop=StopRequest(),
                             log=SilentLog(), resume=state, warn=lambda _: None)
    rng = capture_rng()
    try:
        trainer = Trainer(scratch, training)
        return _optimizer_mismatch(trainer.opt)
    except Exception as e:  # any failure to restore is a reason to set the state aside
        text = one_line(str(e), limit=160)
        return f"does not restore ({type(e).__name__}{': ' + text if text else ''})"
    finally:
        restore_rng(rng)


def _tensor_mismatch(expected: dict[str, torch.Tensor], saved: Any, what: str) -> Optional[str]:
    if not isinstance(saved, dict):
        return f"has no {what} weights"
    missing = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    if missing or extra:
        return f"{what} keys differ (missing {missing[:3]}, unexpected {extra[:3]})"
    for key, want in expected.items():
        have = saved[key]
        if not isinstance(have, torch.Tensor):
            return f"{what}.{key} is not a tensor"
        if have.shape != want.shape or have.dtype != want.dtype:
            return (f"{what}.{key} is {tuple(have.shape)} {have.dtype}, the model needs "
                    f"{tuple(want.shape)} {want.dtype}")
    return None


def _optimizer_mismatch(opt: torch.optim.Optimizer) -> Optional[str]:
    """AdamW's load_state_dict checks group sizes, not the shapes of its moments."""
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != p.shape:
                    return f"optimizer {key} is {tuple(value.shape)}, its parameter {tuple(p.shape)}"
    return None
