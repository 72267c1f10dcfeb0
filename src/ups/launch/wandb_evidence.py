"""`watch`'s evidence for a run whose only remote is its W&B run: the run's summary.

The instance records its outcome there before it stops itself, and its heartbeat after
each publish (`ups.remote.wandb_outcome`); this reads both back through `wandb.Api()`
with the watcher's own key. The run's path comes from the local config's
`logging.wandb` (entity, project), as the trainer on the instance resolves it.
"""

from __future__ import annotations

from typing import Optional

from ups.launch.commands import RemoteEvidence


class WandbEvidence(RemoteEvidence):
    def __init__(self, run_id: str, config: Optional[str] = None) -> None:
        from ups.remote.wandb_outcome import wandb_run_path

        self.remote = wandb_run_path(run_id, config=config)  # read by `_read` as the readers' argument

    def _readers(self):
        from ups.remote.wandb_outcome import read_wandb_heartbeat, read_wandb_outcome

        return read_wandb_outcome, read_wandb_heartbeat
