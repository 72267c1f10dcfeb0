"""The launcher's subcommands: parsed arguments in, library calls, printed result out.

Kept apart from the argument parser (`ups.launch.cli`) so each command reads top to
bottom, and from the SDK wrapper (`ups.launch.vast`) so nothing here speaks HTTP.
Secrets are read from the local environment by name and go only into the create
request; nothing printed here contains their values.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

from ups.errors import LaunchError, RemoteUnavailableError, one_line
from ups.launch.onstart import generate_onstart_script
from ups.launch.packing import onstart_field
from ups.launch.ratelimit import spacing
from ups.launch.requested import is_stop_requested, record_stop
from ups.launch.vast import CreateRequest, OfferFilter, OfferTaken, VastApi
from ups.launch.watch import Action, NoOfferError, WatchPolicy, stamp, watch
from ups.resume.atomic import atomic_path

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def forwarded_secrets(names: list[str] | None) -> dict[str, str]:
    """Values of the named local environment variables, to send as instance env vars."""
    secrets = {}
    for name in names or []:
        if not _ENV_NAME.fullmatch(name) or name.startswith("CONTAINER_"):
            raise LaunchError(f"--env {name!r}: give the name of a variable (not CONTAINER_*), not NAME=value")
        if name not in os.environ:
            raise LaunchError(f"--env {name}: it is not set in your environment")
        secrets[name] = os.environ[name]
    return secrets


def offer_filter(args: argparse.Namespace) -> OfferFilter:
    if args.interruptible != (args.bid is not None):
        raise LaunchError("--interruptible and --bid PRICE go together (the bid is $/hour for the whole machine)")
    return OfferFilter(
        gpu_name=args.gpu_name, num_gpus=args.num_gpus, max_price=args.max_price,
        min_reliability=args.min_reliability, disk_gb=args.disk_gb,
        interruptible=args.interruptible, bid=args.bid,
    )


def config_checkpoint_dir(config_path: str) -> str:
    """`training.checkpoint_dir` of the config, read from this machine's copy of it.

    The onstart script must know where training keeps its state: the first boot clears
    it, and a restart checks it before falling back to the remote. Without a local copy:
    the default, which `onstart_script` then mentions.
    """
    from ups.config import DEFAULT_CHECKPOINT_DIR  # pulls in pydantic: lazy
    from ups.config_yaml import read_yaml

    if not Path(config_path).is_file():
        return DEFAULT_CHECKPOINT_DIR
    training = read_yaml(config_path).get("training") or {}
    return str(training.get("checkpoint_dir") or DEFAULT_CHECKPOINT_DIR).rstrip("/")


def onstart_script(args: argparse.Namespace, resume_from_remote: bool) -> str:
    try:
        install = shlex.split(args.install_cmd) if args.install_cmd is not None else None
    except ValueError as e:
        raise LaunchError(f"--install-cmd {args.install_cmd!r}: {e}") from e
    checkpoint_dir = config_checkpoint_dir(args.config)
    script = generate_onstart_script(
        args.config, git_method=args.git_method, auto_shutdown=args.auto_shutdown,
        branch=args.branch, resume_from_wandb=args.resume_from_wandb, resume_mode=args.resume_mode,
        workspace=args.workspace, repo_url=args.repo_url, shutdown_action=args.shutdown_action,
        remote_uri=args.checkpoint_remote, resume_from_remote=resume_from_remote,
        install_cmd=install, python_exe=args.python, checkpoint_dir=checkpoint_dir,
    )
    if not Path(args.config).is_file():  # said once the script is valid, so an error stays one line
        print(f"note: {args.config} is not on this machine; the instance's checkpoints are assumed to be "
              f"in {checkpoint_dir}/ (training.checkpoint_dir)", file=sys.stderr)
    return script


def save_script(script: str, path: str) -> None:
    out = Path(path)
    with atomic_path(out) as tmp:  # fsynced and renamed: a crash leaves the old script or the new one
        tmp.write_text(script)
        tmp.chmod(0o755)
    print(f"Generated onstart script: {out}")


def create_request(args: argparse.Namespace, script: str, secrets: dict[str, str]) -> CreateRequest:
    return CreateRequest(
        image=args.image, disk_gb=args.disk_gb, onstart=onstart_field(script),
        secrets=secrets, bid_price=args.bid if args.interruptible else None,
    )


def rent(api: VastApi, wanted: OfferFilter, request: CreateRequest, offer_id: int | None = None,
         log=None) -> tuple[int, dict]:
    """Create an instance on the cheapest matching offer; a taken offer moves on to the next.

    Offers go fast: one found a moment ago may be rented by the time it is asked for
    (vast-ai/docs create_instance.yaml: 404 / 410 `no_such_ask`). The next create waits
    out the create endpoint's minimum interval.
    """
    request.check()
    offers = [{"id": offer_id}] if offer_id is not None else api.search_offers(wanted, limit=5)
    if not offers:
        raise NoOfferError(f"no offer matches {json.dumps(wanted.query())}; relax the filters")
    taken = []
    for n, offer in enumerate(offers):
        if n:
            time.sleep(spacing("create"))
        try:
            return api.create_instance(int(offer["id"]), request), offer
        except OfferTaken as e:
            if offer_id is not None:
                raise  # the offer you named is gone: say so, do not pick another for you
            taken.append(str(offer["id"]))
            (log or _log)(f"{stamp()} offer {offer['id']} was taken meanwhile ({e}); trying the next one")
    raise NoOfferError(f"every matching offer was taken meanwhile (offers {', '.join(taken)}); try again")


def _offer_text(offer: dict) -> str:
    price = offer.get("dph_total")
    extras = [f"{offer['gpu_name']} x{offer.get('num_gpus', '?')}" if offer.get("gpu_name") else "",
              f"${price:.3f}/h" if isinstance(price, (int, float)) else ""]
    return " ".join(["offer", str(offer["id"]), *filter(None, extras)])


def cmd_search(args: argparse.Namespace) -> int:
    offers = VastApi().search_offers(offer_filter(args), limit=args.limit)
    print(f"{'offer':>10}  {'gpu':<18} {'n':>2} {'$/h':>7} {'reliab':>6} {'disk':>6}  where")
    for o in offers:
        print(f"{o.get('id', '?'):>10}  {str(o.get('gpu_name', '?')):<18} {o.get('num_gpus', '?'):>2} "
              f"{o.get('dph_total', 0):>7.3f} {o.get('reliability', 0):>6.3f} "
              f"{o.get('disk_space', 0):>6.0f}  {o.get('geolocation', '')}")
    print(f"{len(offers)} offer(s)", file=sys.stderr)
    return 0


def cmd_launch(args: argparse.Namespace) -> int:
    wanted = offer_filter(args)
    secrets = forwarded_secrets(args.env)
    script = onstart_script(args, resume_from_remote=args.resume_from_remote)
    request = create_request(args, script, secrets)
    shown = request.redacted_payload() if args.dry_run else None  # needs the SDK: fail before writing anything
    save_script(script, args.onstart_out)
    if args.resume_from_wandb and "WANDB_API_KEY" not in secrets:
        print("warning: --resume-from-wandb without --env WANDB_API_KEY: the instance "
              "cannot reach W&B unless its image provides a key", file=sys.stderr)
    if args.dry_run:
        offer = {"offer_id": args.offer_id} if args.offer_id is not None else \
            {"search": {"type": wanted.offer_type, "query": wanted.query(), "order": "dph_total"}}
        print(script)
        print("# request that would be sent (secrets redacted):")
        print(json.dumps({**offer, "create_instance": shown}, indent=2))
        print("# dry run: nothing was sent", file=sys.stderr)
        return 0
    api = VastApi()
    instance_id, offer = rent(api, wanted, request, args.offer_id)
    print(f"Launched instance {instance_id} from {_offer_text(offer)}")
    print(f"Follow it: python scripts/vast_launch.py watch {instance_id} --config {args.config} ...",
          file=sys.stderr)
    return 0


def _describe(row: dict) -> str:
    # cur_state/next_state too: with intended_status they are what tells a paused instance
    keys = ("id", "actual_status", "intended_status", "cur_state", "next_state", "label", "gpu_name", "num_gpus",
            "dph_total", "is_bid", "ssh_host", "ssh_port", "status_msg")
    return "  ".join(f"{k}={row.get(k)}" for k in keys if row.get(k) not in (None, ""))


def cmd_status(args: argparse.Namespace) -> int:
    api = VastApi()
    if args.instance_id is None:
        rows = api.show_instances()
        for row in rows:
            print(_describe(row))
        print(f"{len(rows)} instance(s)", file=sys.stderr)
        return 0
    row = api.show_instance(args.instance_id)
    if row is None:
        raise LaunchError(f"instance {args.instance_id} not found (destroyed, or not yours)")
    print(_describe(row))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    print(VastApi().logs(args.instance_id, tail=args.tail), end="")
    return 0


def _record_requested(instance_id: int, action: str, remote: str | None) -> None:
    """Before asking Vast: say the stop is yours, where `watch` reads it (see ups.launch.requested)."""
    from ups.remote.outcome import STOP_REQUESTED, write_outcome

    record_stop(instance_id, action)
    if remote:
        write_outcome(remote, STOP_REQUESTED, instance_id=instance_id, by="user", action=action)


def cmd_stop(args: argparse.Namespace) -> int:
    _record_requested(args.instance_id, "stop", args.checkpoint_remote)
    VastApi().stop(args.instance_id)
    print(f"Stopped instance {args.instance_id} (its disk is kept and still billed; destroy ends billing)")
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    if not args.yes:
        raise LaunchError(f"destroy deletes instance {args.instance_id} and its disk: add --yes to confirm")
    _record_requested(args.instance_id, "destroy", args.checkpoint_remote)
    if VastApi().destroy(args.instance_id):
        print(f"Destroyed instance {args.instance_id}: all its billing has ended")
    else:
        print(f"Instance {args.instance_id} was already gone (no_such_instance): nothing is billing")
    return 0


class RemoteEvidence:
    """What `watch` reads besides Vast: the run's records in the remote copy, your stops."""

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> "RemoteEvidence":
        """The fsspec remote when there is one, else the W&B run's summary (ups.remote.wandb_outcome)."""
        if args.checkpoint_remote or not args.resume_from_wandb:
            return cls(args.checkpoint_remote)
        from ups.launch.wandb_evidence import WandbEvidence

        return WandbEvidence(args.resume_from_wandb, getattr(args, "config", None))

    def __init__(self, remote: str | None) -> None:
        self.remote = remote
        if remote:
            from ups.remote.fsspec_store import parse_uri

            parse_uri(remote)  # a URI this machine cannot read fails now, in one line, not mid-watch

    def check_readable(self) -> None:
        """Read the records once before watching: an error that waiting will not fix (no
        credentials, a refused key) is one line and exit 2 now, not a warning at every poll."""
        from ups.remote.object_store import describe, is_permanent

        if not self.remote:
            return
        try:
            self._readers()[0](self.remote)
        except Exception as e:  # noqa: BLE001 - only the permanent ones stop the watch
            if is_permanent(e):
                raise RemoteUnavailableError(f"watch: cannot read the run's records in {self.remote}: "
                                             f"{describe(e)}; nothing was rented or stopped") from e

    def _read(self, reader):
        try:
            return reader(self.remote) if self.remote else None
        except Exception as e:  # a blip of the object store is not evidence either way
            _log(f"{stamp()} watch: could not read {self.remote} ({one_line(e, typed=True)}); ignored this poll")
            return None

    def _readers(self):
        from ups.remote.outcome import read_heartbeat, read_outcome

        return read_outcome, read_heartbeat

    def outcome(self, instance_id: int) -> tuple[str, str] | None:
        record = self._read(self._readers()[0])
        if record is None or record.instance_id != instance_id:
            return None  # an older instance's record says nothing about this one
        detail = [f"exit code {record.exit_code}" if record.exit_code is not None else "",
                  f"in {record.phase}" if record.phase else "", f"at {record.at}", f"then {record.action}"
                  if record.action else "", "by you" if record.by == "user" else ""]
        return record.outcome, " ".join(filter(None, detail))

    def stop_requested(self, instance_id: int) -> bool:
        return is_stop_requested(instance_id)

    def heartbeat(self) -> str | None:
        beat = self._read(self._readers()[1])
        return None if beat is None else f"{beat.tag}@{beat.unix}"


def _log(line: str) -> None:
    print(line, flush=True)


def cmd_watch(args: argparse.Namespace) -> int:
    if not (args.checkpoint_remote or args.resume_from_wandb):
        raise LaunchError("watch needs somewhere to resume a replacement from: "
                          "--checkpoint-remote URI or --resume-from-wandb RUN_ID")
    wanted = offer_filter(args)
    secrets = forwarded_secrets(args.env)
    script = onstart_script(args, resume_from_remote=bool(args.checkpoint_remote))
    save_script(script, args.onstart_out)
    request = create_request(args, script, secrets)
    evidence = RemoteEvidence.for_args(args)  # the remote, else the W&B run: where outcome and heartbeat are
    evidence.check_readable()
    hang = args.hang_timeout
    policy = WatchPolicy(down_timeout_s=args.down_timeout, paused_timeout_s=args.stopped_timeout,
                         start_timeout_s=args.start_timeout, max_relaunches=args.max_relaunches,
                         hang_timeout_s=hang)
    api = VastApi()

    def relaunch() -> int:
        instance_id, offer = rent(api, wanted, request)
        _log(f"{stamp()} watch: rented {_offer_text(offer)} as instance {instance_id}")
        return instance_id

    decision, last_id = watch(api, args.instance_id, policy, relaunch, args.poll_seconds, log=_log,
                              evidence=evidence)
    if decision.action is Action.DONE:
        print(f"{stamp()} watch: finished; instance {last_id}: {decision.reason}")
        if "then none" in decision.reason:
            print(f"note: instance {last_id} was not stopped (no --auto-shutdown) and is still billing: "
                  f"vast_launch.py destroy {last_id} --yes", file=sys.stderr)
        return 0
    print(f"error: instance {last_id}: {decision.action.value}: {decision.reason}"
          + (f"; it was left as is (destroy: vast_launch.py destroy {last_id} --yes)"
             if decision.action in (Action.GIVE_UP, Action.FAILED) and "fix --image" not in decision.reason
             else ""), file=sys.stderr)
    return 1
