"""Vast.ai: the onstart script, the SDK calls, and the watch that relaunches lost runs.

`onstart` writes the idempotent script an instance runs on every start, from values
that `validate` checked;
`vast` wraps the official `vastai` SDK; `watch` decides (pure) and acts (loop) when an
instance is lost; `self_stop` runs on the instance after training; `cli`/`commands`
are `scripts/vast_launch.py`.
"""

from ups.launch.onstart import generate_onstart_script
from ups.launch.validate import validate_run_id

__all__ = ["generate_onstart_script", "validate_run_id"]
