"""Run inside a Vast instance: record the run's outcome, then stop or destroy the instance.

Why not `shutdown -h now` (the spec's line): a Vast instance is a Docker container; a
container cannot power off its host, `shutdown` is usually absent or not permitted, and
even a container that exits is billed until the *instance* is stopped or destroyed
through the Vast API. Vast gives each instance its own id and an API key scoped to it
(`CONTAINER_ID`, `CONTAINER_API_KEY`), which is what this uses.

The outcome goes into the instance's label (`ups:complete` / `ups:failed`) before the
stop, so `vast_launch.py watch` can tell a finished run from a lost one.

    python -m ups.launch.self_stop --outcome complete --action stop
"""

from __future__ import annotations

import argparse
import os
import sys

from ups.errors import LaunchError

LABEL_TRAINING = "ups:training"
LABEL_COMPLETE = "ups:complete"
LABEL_FAILED = "ups:failed"
OUTCOME_LABELS = {"complete": LABEL_COMPLETE, "failed": LABEL_FAILED}
ID_ENV, KEY_ENV = "CONTAINER_ID", "CONTAINER_API_KEY"


def own_instance() -> tuple[int, str] | None:
    """(instance id, scoped API key) from the container's environment, None off Vast."""
    raw_id, key = os.environ.get(ID_ENV, ""), os.environ.get(KEY_ENV, "")
    if not raw_id or not key:
        return None
    try:
        return int(raw_id), key
    except ValueError as e:
        raise LaunchError(f"{ID_ENV}={raw_id!r} is not an instance id") from e


def self_stop(outcome: str, action: str) -> str:
    """Label this instance with `outcome`, then apply `action` (stop, destroy or none)."""
    from ups.launch.vast import VastApi  # the SDK is needed only on the instance

    me = own_instance()
    if me is None:
        if action == "none":
            return f"not on a Vast instance ({ID_ENV} unset): nothing to label"
        raise LaunchError(f"{ID_ENV}/{KEY_ENV} are not set: not on a Vast instance, cannot {action} it")
    instance_id, key = me
    api = VastApi(api_key=key)
    try:
        api.set_label(instance_id, OUTCOME_LABELS[outcome])
    except LaunchError as e:  # the label helps `watch`; stopping matters more
        print(f"warning: could not label instance {instance_id}: {e}", file=sys.stderr)
    if action == "stop":
        api.stop(instance_id)
    elif action == "destroy":
        api.destroy(instance_id)
    return f"instance {instance_id}: outcome {outcome}, action {action}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ups.launch.self_stop", description=__doc__.splitlines()[0])
    p.add_argument("--outcome", choices=sorted(OUTCOME_LABELS), required=True)
    p.add_argument("--action", choices=("stop", "destroy", "none"), required=True,
                   help="stop: billing for GPU ends, disk is kept (and billed); "
                        "destroy: all billing ends, the disk is deleted; none: label only")
    args = p.parse_args(argv)
    try:
        print(self_stop(args.outcome, args.action), flush=True)
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
