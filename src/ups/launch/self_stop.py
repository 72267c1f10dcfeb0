"""Run inside a Vast instance: record the run's outcome, then stop or destroy the instance.

Why not `shutdown -h now` (the spec's line): a Vast instance is a Docker container; a
container cannot power off its host, `shutdown` is usually absent or not permitted, and
even a container that exits is billed until the *instance* is stopped or destroyed
through the Vast API. Vast gives each instance its own id and an API key scoped to it
(`CONTAINER_ID`, `CONTAINER_API_KEY`), which is what this uses. That key may only start,
stop or destroy its own instance — it cannot set a label — so the outcome goes into the
remote copy (`ups.remote.outcome`, `--remote URI`; for a run whose only remote is its
W&B run, `--wandb-run RUN_ID`: the run's summary, `ups.remote.wandb_outcome`) *before*
the stop: `vast_launch.py watch` reads it there and tells a finished or failed run from
an outbid pause.

A refused call (HTTP 429) is retried by `VastApi` for over a minute; the onstart script
retries this whole command after that, so a GPU is never left billing by a rate limit.

    python -m ups.launch.self_stop --outcome complete --action stop --remote s3://b/run1
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from ups.errors import LaunchError

OUTCOMES = {"complete": "completed", "failed": "failed"}
ID_ENV, KEY_ENV = "CONTAINER_ID", "CONTAINER_API_KEY"
WANDB_RUN_ENV, WANDB_CONFIG_ENV = "UPS_WANDB_RUN", "UPS_WANDB_CONFIG"


def own_instance() -> tuple[int, str] | None:
    """(instance id, scoped API key) from the container's environment, None off Vast."""
    raw_id, key = os.environ.get(ID_ENV, ""), os.environ.get(KEY_ENV, "")
    if not raw_id or not key:
        return None
    try:
        return int(raw_id), key
    except ValueError as e:
        raise LaunchError(f"{ID_ENV}={raw_id!r} is not an instance id") from e


@dataclass(frozen=True)
class WandbTarget:
    """The W&B run that holds the outcome when there is no `--remote` (see `wandb_run_path`)."""

    run_id: str
    config: str | None = None
    checkpoint_dir: str | None = None


def record(remote: str | None, outcome: str, instance_id: int | None, exit_code: int | None, phase: str,
           action: str, wandb_run: WandbTarget | None = None) -> str:
    """Write the outcome into the remote copy; a failure is reported, and the stop still happens."""
    if not remote and wandb_run is None:
        return "no --remote or --wandb-run: the outcome is not recorded"
    where = remote or f"W&B run {wandb_run.run_id}"
    try:
        if remote:
            from ups.remote.outcome import write_outcome

            write_outcome(remote, OUTCOMES[outcome], instance_id=instance_id, exit_code=exit_code, phase=phase,
                          action=action)
        else:
            from ups.remote.wandb_outcome import wandb_run_path, write_wandb_outcome

            path = wandb_run_path(wandb_run.run_id, config=wandb_run.config, checkpoint_dir=wandb_run.checkpoint_dir)
            where = f"W&B run {path}"
            write_wandb_outcome(path, OUTCOMES[outcome], instance_id=instance_id, exit_code=exit_code, phase=phase,
                                action=action)
    except Exception as e:  # stopping the GPU matters more than the record
        from ups.errors import one_line

        print(f"warning: could not record the outcome in {where}: {one_line(e, typed=True)}", file=sys.stderr)
        return "outcome NOT recorded"
    return f"outcome recorded in {where}"


def self_stop(outcome: str, action: str, remote: str | None = None, exit_code: int | None = None,
              phase: str = "", wandb_run: WandbTarget | None = None) -> str:
    """Record `outcome` in the remote, then apply `action` (stop, destroy or none)."""
    me = own_instance()
    if me is None and action != "none":
        raise LaunchError(f"{ID_ENV}/{KEY_ENV} are not set: not on a Vast instance, cannot {action} it")
    recorded = record(remote, outcome, me[0] if me else None, exit_code, phase, action, wandb_run)
    if me is None:
        return f"not on a Vast instance ({ID_ENV} unset): {recorded}"
    instance_id, key = me
    if action != "none":
        from ups.launch.vast import VastApi, VastApiError, is_gone  # the SDK is needed only to stop

        api = VastApi(api_key=key)
        if action == "stop":
            try:
                api.stop(instance_id)
            except VastApiError as e:
                if not is_gone(e):
                    raise
                return f"instance {instance_id}: outcome {outcome}, {recorded}; already gone, nothing to stop"
        else:
            api.destroy(instance_id)  # already gone counts as done
    return f"instance {instance_id}: outcome {outcome}, {recorded}, action {action}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ups.launch.self_stop", description=__doc__.splitlines()[0])
    p.add_argument("--outcome", choices=sorted(OUTCOMES), required=True)
    p.add_argument("--action", choices=("stop", "destroy", "none"), required=True,
                   help="stop: billing for GPU ends, disk is kept (and billed); "
                        "destroy: all billing ends, the disk is deleted; none: record only")
    p.add_argument("--remote", metavar="URI", help="the run's --checkpoint-remote: where the outcome goes")
    # the onstart script of a W&B-only run exports these (ups.launch.onstart)
    p.add_argument("--wandb-run", metavar="RUN_ID", default=os.environ.get(WANDB_RUN_ENV) or None,
                   help=f"without --remote: the W&B run whose summary gets it (default ${WANDB_RUN_ENV})")
    p.add_argument("--config", metavar="PATH", default=os.environ.get(WANDB_CONFIG_ENV) or None,
                   help=f"with --wandb-run: the training config, for its W&B project (default ${WANDB_CONFIG_ENV})")
    p.add_argument("--checkpoint-dir", metavar="DIR", help="with --wandb-run: its metadata.json names the run")
    p.add_argument("--exit-code", type=int, metavar="N")
    p.add_argument("--phase", default="", help="where it ended: clone, install, data, train")
    args = p.parse_args(argv)
    try:
        target = WandbTarget(args.wandb_run, args.config, args.checkpoint_dir) if args.wandb_run else None
        print(self_stop(args.outcome, args.action, args.remote, args.exit_code, args.phase, target), flush=True)
    except LaunchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
