"""When to save a resumable state and which ones to keep: small pure functions.

Kept apart from the mechanism (the background writer, the disk) so each rule
is tested without a file system. Step-based saves land on multiples of
`every_steps`, so an interrupted run and an uninterrupted one save at the same
steps; time-based saves bound the work lost when steps are slow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class SavePolicy:
    every_steps: Optional[int] = None
    every_seconds: Optional[float] = None

    def should_save(self, step: int, last_saved_step: int, seconds_since_save: float) -> bool:
        """True when `step` (just finished) should be saved: `decide` for a process alone."""
        return self.decide(step, last_saved_step, time_agreed=self.is_time_due(step, last_saved_step,
                                                                                seconds_since_save))

    def decide(self, step: int, last_saved_step: int, *, time_agreed: bool, stop: bool = False,
               last: bool = False) -> bool:
        """The one save decision the checkpointer acts on, after each step.

        `time_agreed`: the time-based half as the group agreed it (rank 0's clock);
        `stop`: a stop signal the group agreed on — its state is always saved;
        `last`: the stage's final step, whose weights become its outputs instead.
        """
        if stop:
            return True
        return not last and (self.is_step_due(step, last_saved_step) or time_agreed)

    def is_step_due(self, step: int, last_saved_step: int) -> bool:
        """The step-based half: the same on every rank of a group, so it needs no agreement."""
        return step > last_saved_step and bool(self.every_steps) and step % self.every_steps == 0

    def is_time_due(self, step: int, last_saved_step: int, seconds_since_save: float) -> bool:
        """The time-based half: a group acts on rank 0's clock (see ups.parallel)."""
        return step > last_saved_step and bool(self.every_seconds) and seconds_since_save >= self.every_seconds


def states_to_prune(steps: Sequence[int], keep: int, protect: Optional[int] = None) -> list[int]:
    """Steps of state files to delete: all but the newest `keep`, never `protect`.

    `protect` is the step the status file currently names: deleting it would
    leave the status pointing at nothing if the newest file turned out bad.
    """
    newest_first = sorted(set(steps), reverse=True)
    kept = set(newest_first[: max(keep, 1)])
    if protect is not None:
        kept.add(protect)
    return sorted(s for s in newest_first if s not in kept)
