"""The checkpointer the loop calls every step acts on `SavePolicy.decide`, the decision tested here."""

from __future__ import annotations

import torch

from ups.resume.interval import AdaptiveSavePolicy
from ups.resume.policy import SavePolicy
from ups.training.checkpointer import Checkpointer
from ups.parallel import Solo


class RecordingSaver:
    def __init__(self):
        self.saved: list[tuple[int, bool]] = []

    def save(self, state, *, wait=False):
        self.saved.append((state["step"], wait))

    def wait(self):
        pass


class AgreeingGroup(Solo):
    """A group whose rank 0 asks for a time-based save at step 3 (as the all-reduce would report it)."""

    def agree(self, signum, asked):
        return signum, 1 if self.step == 3 else 0


def drive(ckpt: Checkpointer, steps: int, stop_at: int = 0, group=None) -> list[int]:
    for step in range(1, steps + 1):
        if group is not None:
            group.step = step
        signum = ckpt.save(step, lambda: {"step": step}, last=step == steps, stop=15 if step == stop_at else 0)
        if signum:
            return [signum]
    return []


def test_step_based_saves_land_on_multiples_and_never_on_the_last_step():
    saver = RecordingSaver()
    drive(Checkpointer(SavePolicy(every_steps=4), Solo(torch.device("cpu")), saver), 12)
    assert saver.saved == [(4, False), (8, False)]  # step 12 is the last: its weights become the outputs


def test_a_stop_saves_at_once_waits_for_the_write_and_returns_the_signal():
    saver = RecordingSaver()
    stopped = drive(Checkpointer(SavePolicy(every_steps=4), Solo(torch.device("cpu")), saver), 12, stop_at=6)
    assert stopped == [15] and saver.saved == [(4, False), (6, True)]


def test_the_time_based_save_follows_the_groups_agreement_not_the_local_clock():
    group = AgreeingGroup(torch.device("cpu"))
    saver = RecordingSaver()
    never_due_here = AdaptiveSavePolicy(every_steps=None, every_seconds=None, interval=lambda: float("inf"))
    drive(Checkpointer(never_due_here, group, saver), 6, group=group)
    assert saver.saved == [(3, False)]


def test_decide_is_the_whole_rule():
    p = SavePolicy(every_steps=4)
    assert p.decide(4, 0, time_agreed=False)
    assert not p.decide(4, 4, time_agreed=False)  # already saved at this step
    assert p.decide(3, 0, time_agreed=True)
    assert not p.decide(8, 0, time_agreed=True, last=True)
    assert p.decide(8, 8, time_agreed=False, stop=True, last=True)
