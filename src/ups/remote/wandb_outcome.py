"""The outcome and heartbeat records of `ups.remote.outcome`, kept in the W&B run itself.

A run whose only remote copy is its W&B run has no `ups_outcome.json` to write, yet the
watcher must still tell "completed and stopped itself" from "outbid and paused". Both
records go into the run's summary, under `ups_outcome` and `ups_heartbeat`, because
the instance's own W&B key (the one it trains with) can write that and `wandb.Api()`
on the watcher's machine can read it back, with no extra rights or artifacts:

- the heartbeat is set on the live run (`run.summary`) after each publish of the sync,
  so it reaches the server with the run's own stream;
- the outcome is written after training has ended (by `ups.launch.self_stop`, which also
  covers a failed clone or install), through the public API: `Api().run(path).summary`
  then `summary.update()`, an `UpsertBucket` with `summaryMetrics`
  (wandb/apis/public/summary.py `HTTPSummary._write`, wandb 0.31).

A reader that finds a record missing or malformed gets None, never an exception; a W&B
that cannot be asked raises (the watcher logs it and asks again at the next poll).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

from ups.remote.outcome import (Heartbeat, Outcome, heartbeat_from, new_heartbeat, new_outcome, outcome_from,
                                own_instance_id)

OUTCOME_KEY, HEARTBEAT_KEY = "ups_outcome", "ups_heartbeat"
API_TIMEOUT_S = 20.0


def wandb_run_path(run_id: str, *, config: Optional[str] = None, checkpoint_dir: Optional[str] = None) -> str:
    """`entity/project/id` of a run: from the run's metadata.json, else the config's
    `logging.wandb`, else `WANDB_ENTITY`/`WANDB_PROJECT` (entity omitted: the key's default)."""
    entity, project = os.environ.get("WANDB_ENTITY"), os.environ.get("WANDB_PROJECT")
    info = _metadata_run(checkpoint_dir) if checkpoint_dir else {}
    if info.get("id") == run_id and info.get("project"):
        entity, project = info.get("entity") or entity, info["project"]
    elif config and Path(config).is_file():
        from ups.config import load_config

        w = load_config(config).logging.wandb
        entity, project = w.entity or entity, w.project
    project = project or "ups"
    return f"{entity}/{project}/{run_id}" if entity else f"{project}/{run_id}"


def _metadata_run(checkpoint_dir: str) -> dict:
    try:
        data = json.loads((Path(checkpoint_dir) / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    info = data.get("training_wandb") if isinstance(data, dict) else None
    return info if isinstance(info, dict) else {}


def _api_run(path: str) -> Any:
    import wandb

    return wandb.Api(timeout=API_TIMEOUT_S).run(path)


def write_wandb_outcome(path: str, outcome: str, *, instance_id: Optional[int], exit_code: Optional[int] = None,
                        phase: str = "", by: str = "run", action: str = "") -> Outcome:
    record = new_outcome(outcome, instance_id=instance_id, exit_code=exit_code, phase=phase, by=by, action=action)
    run = _api_run(path)
    run.summary[OUTCOME_KEY] = asdict(record)
    run.summary.update()  # one UpsertBucket with the whole summary
    return record


def _summary_record(path: str, key: str) -> Optional[dict]:
    record = dict(_api_run(path).summary_metrics or {}).get(key)
    return record if isinstance(record, dict) else None


def read_wandb_outcome(path: str) -> Optional[Outcome]:
    return outcome_from(_summary_record(path, OUTCOME_KEY))


def read_wandb_heartbeat(path: str) -> Optional[Heartbeat]:
    return heartbeat_from(_summary_record(path, HEARTBEAT_KEY))


def wandb_heartbeat_writer(run: Any) -> Callable[[Any], None]:
    """For `RemoteSync` publishing to the W&B run: after a publish, its tag and the time."""
    instance_id = own_instance_id()

    def beat(snap: Any) -> None:
        try:
            run.summary.update({HEARTBEAT_KEY: asdict(new_heartbeat(snap.tag, instance_id))})
        except Exception:  # the heartbeat only informs the watcher; it must never stop the sync
            pass

    return beat
