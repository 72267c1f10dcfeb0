"""Watch a training instance and replace it when it is lost: policy apart from mechanism.

Why: rented GPUs vanish — a host goes offline, an interruptible instance is outbid and
paused indefinitely. Training already keeps a remote copy of its progress, so the cure
is a replacement instance that resumes from the remote. *Whether* to act is a pure
function (`decide`) over what was observed, for how long, and how many replacements
were made; it is tested without a network. *How* (polling, launching, destroying) is
the small `watch` loop.

Success is read from the instance label that the instance sets itself through the Vast
API after `train.py` exits 0 (`ups:complete`, see `ups.launch.self_stop`); a stop you
asked for, or an instance that no longer exists, ends the watch without a relaunch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Callable, Protocol

from ups.errors import LaunchError
from ups.launch.self_stop import LABEL_COMPLETE, LABEL_FAILED
from ups.launch.vast import VastApiError


class Health(Enum):
    RUNNING = "running"
    STARTING = "starting"  # being created, loading its image, rebooting
    PAUSED = "paused"  # stopped while it wants to run: an outbid interruptible instance
    DOWN = "down"  # exited, offline, unknown: the host or container is gone
    COMPLETE = "complete"  # labelled by its own successful run
    FAILED = "failed"  # labelled by its own failed run (train.py exited 1-127)
    STOPPED = "stopped"  # stopped on request (yours, or its own auto-shutdown)
    GONE = "gone"  # destroyed (by you, or by its own auto-shutdown)


TERMINAL = {Health.COMPLETE, Health.FAILED, Health.STOPPED, Health.GONE}
_STARTING = {None, "", "created", "loading", "rebooting", "frozen", "scheduling"}
_PAUSED = {"stopped"}


@dataclass(frozen=True)
class Observation:
    """The fields of one `show instance` answer that the policy reads."""

    found: bool
    actual_status: str | None = None
    intended_status: str | None = None
    label: str | None = None

    @classmethod
    def from_row(cls, row: dict | None) -> Observation:
        if row is None:
            return cls(found=False)
        return cls(True, row.get("actual_status"), row.get("intended_status"), row.get("label"))


def classify(obs: Observation) -> Health:
    """Read one observation; the label (set by the run itself) outranks the status."""
    if not obs.found:
        return Health.GONE
    if obs.label == LABEL_COMPLETE:
        return Health.COMPLETE
    if obs.label == LABEL_FAILED:
        return Health.FAILED
    if obs.intended_status == "stopped":
        return Health.STOPPED
    if obs.actual_status == "running":
        return Health.RUNNING
    if obs.actual_status in _STARTING:
        return Health.STARTING
    if obs.actual_status in _PAUSED:
        return Health.PAUSED
    return Health.DOWN  # exited, offline, unknown, or a status this code does not know


@dataclass(frozen=True)
class WatchPolicy:
    down_timeout_s: float = 600.0
    paused_timeout_s: float = 1800.0
    start_timeout_s: float = 1800.0
    max_relaunches: int = 3

    def timeout_for(self, health: Health) -> float:
        if health is Health.PAUSED:
            return self.paused_timeout_s
        if health is Health.STARTING:
            return self.start_timeout_s
        return self.down_timeout_s


class Action(Enum):
    WAIT = "wait"
    RELAUNCH = "relaunch"
    DONE = "done"  # exit 0
    FAILED = "failed"  # exit 1: the run itself failed
    GIVE_UP = "give-up"  # exit 1: lost again after max_relaunches


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(health: Health, unhealthy_for_s: float, relaunches: int, policy: WatchPolicy) -> Decision:
    """What to do about an instance seen as `health`, unhealthy for `unhealthy_for_s`."""
    if health is Health.COMPLETE:
        return Decision(Action.DONE, "the run completed (instance labelled it)")
    if health is Health.FAILED:
        return Decision(Action.FAILED, "the run failed on the instance; read its logs")
    if health is Health.STOPPED:
        return Decision(Action.DONE, "stopped on request; not relaunching")
    if health is Health.GONE:
        return Decision(Action.DONE, "destroyed (its own auto-shutdown, or you); not relaunching")
    if health is Health.RUNNING:
        return Decision(Action.WAIT, "running")
    timeout, took = policy.timeout_for(health), _secs(unhealthy_for_s)
    if unhealthy_for_s < timeout:
        return Decision(Action.WAIT, f"{health.value} for {took} of {_secs(timeout)} allowed")
    if relaunches >= policy.max_relaunches:
        return Decision(Action.GIVE_UP, f"{health.value} for {took} and "
                                        f"{relaunches} of {policy.max_relaunches} relaunches used")
    return Decision(Action.RELAUNCH, f"{health.value} for {took} (limit {_secs(timeout)}); "
                                     f"relaunch {relaunches + 1} of {policy.max_relaunches}")


def _secs(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


class InstanceApi(Protocol):
    def show_instance(self, instance_id: int) -> dict | None: ...
    def destroy(self, instance_id: int, missing_ok: bool = False) -> None: ...


class NoOfferError(LaunchError):
    """No offer matches right now; the watch keeps the old instance and tries again."""


def stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Watched:
    instance_id: int
    relaunches: int = 0
    unhealthy_since: float | None = None
    fresh: bool = True  # just created: Vast may not list it for a moment


def _observe(api: InstanceApi, w: _Watched) -> Health:
    row = api.show_instance(w.instance_id)
    if row is None and w.fresh and w.relaunches == 0:
        raise LaunchError(f"instance {w.instance_id} not found: check the id with `vast_launch.py status`")
    if row is None and w.fresh:
        return Health.STARTING
    w.fresh = False
    return classify(Observation.from_row(row))


def _replace(api: InstanceApi, w: _Watched, relaunch: Callable[[], int], log: Callable[[str], None]) -> None:
    # Create first, then destroy: if the create fails the old instance is still there.
    # Destroying the old one is not optional: if its host came back it would restart
    # its onstart, resume, and write to the same remote as the replacement.
    new_id = relaunch()
    log(f"{stamp()} watch: launched replacement instance {new_id}; destroying instance {w.instance_id}")
    try:
        api.destroy(w.instance_id, missing_ok=True)
    except LaunchError as e:
        raise LaunchError(f"replacement {new_id} is running but old instance {w.instance_id} "
                          f"could not be destroyed ({e}); destroy it now") from e
    w.instance_id, w.relaunches, w.unhealthy_since, w.fresh = new_id, w.relaunches + 1, None, True


def watch(
    api: InstanceApi,
    instance_id: int,
    policy: WatchPolicy,
    relaunch: Callable[[], int],
    poll_s: float = 60.0,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Decision, int]:
    """Poll until the run ends; returns the final decision and the last instance id."""
    w, last = _Watched(instance_id), None
    while True:
        try:
            health = _observe(api, w)
        except VastApiError as e:  # a blip of the API is not a lost instance
            if not e.transient:
                raise
            log(f"{stamp()} watch: {e}; trying again in {poll_s:.0f}s")
            sleep(poll_s)
            continue
        now = clock()
        if health is Health.RUNNING:
            w.unhealthy_since = None
        elif w.unhealthy_since is None:
            w.unhealthy_since = now
        unhealthy_for = 0.0 if w.unhealthy_since is None else now - w.unhealthy_since
        decision = decide(health, unhealthy_for, w.relaunches, policy)
        if (health, decision.action) != last or decision.action is not Action.WAIT:
            log(f"{stamp()} watch: instance {w.instance_id} {health.value} -> "
                f"{decision.action.value}: {decision.reason}")
        last = (health, decision.action)
        if decision.action is Action.RELAUNCH:
            try:
                _replace(api, w, relaunch, log)
            except NoOfferError as e:
                log(f"{stamp()} watch: {e}; trying again in {poll_s:.0f}s")
        elif decision.action is not Action.WAIT:
            return decision, w.instance_id
        sleep(poll_s)
