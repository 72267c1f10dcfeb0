"""The W&B run of a training: started once, continued by every resume.

The run id is persisted in `metadata.json` (`training_wandb`), so a resumed
process — on this machine or, after a download, on a fresh one — logs into the
same run. Metrics are keyed by `trainer/global_step`, a step that is the same
for the same point of training however many times it was interrupted, so W&B
never drops a resumed point as "step less than current step".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from ups.config import Config
from ups.errors import ConfigError
from ups.resume.metadata import read_metadata, update_metadata

GLOBAL_STEP = "trainer/global_step"
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def validate_run_id(run_id: str, source: str = "--resume-from-wandb") -> str:
    """W&B run ids: letters, digits, '-' and '_', 1–64 characters."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ConfigError(
            f"{source}: {run_id!r} is not a valid W&B run id (letters, digits, '-' and '_', 1-64 characters)"
        )
    return run_id


def persisted_run_id(checkpoint_dir: Path) -> Optional[str]:
    info = read_metadata(checkpoint_dir).get("training_wandb") or {}
    run_id = info.get("id")
    return validate_run_id(run_id, f"{checkpoint_dir}/metadata.json training_wandb.id") if run_id else None


def start_wandb(cfg: Config, checkpoint_dir: Path, run_id: Optional[str] = None, resume: str = "allow") -> Any:
    """Start (or continue) the W&B run; None when W&B logging is off."""
    w = cfg.logging.wandb
    if not w.enabled or w.mode == "disabled":
        return None
    import wandb

    run_id = run_id or persisted_run_id(checkpoint_dir) or wandb.util.generate_id()
    run = wandb.init(
        project=w.project, entity=w.entity, name=w.run_name, group=w.group, tags=list(w.tags) or None,
        mode=w.mode, id=validate_run_id(run_id, "W&B run id"), resume=resume, config=cfg.as_dict(),
    )
    run.define_metric(GLOBAL_STEP)
    run.define_metric("*", step_metric=GLOBAL_STEP)
    update_metadata(checkpoint_dir, training_wandb={
        "id": run.id, "name": run.name, "project": run.project, "entity": run.entity,
        "url": getattr(run, "url", None), "mode": w.mode,
    })
    return run
