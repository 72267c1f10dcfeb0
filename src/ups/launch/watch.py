"""Watch a training instance and replace it when it is lost: policy apart from mechanism.

Why: rented GPUs vanish — a host goes offline, an interruptible instance is outbid and
paused indefinitely, a run hangs. Training keeps a remote copy of its progress, so the
cure is a replacement instance that resumes from the remote. *Whether* to act is a pure
function (`assess`, then `decide`) over what was observed, for how long, and how many
replacements were made; it is tested without a network. *How* (polling, launching,
destroying) is the small `watch` loop.

What Vast shows cannot tell a stop you asked for from an outbid pause: both are
`cur_state == intended_status == next_state == "stopped"` (dstackai/dstack
src/dstack/_internal/core/backends/vastai/compute.py; vast-ai/docs
guides/reference/faq/rental-types.mdx). So a stopped instance is *paused* unless there
is evidence otherwise: the run's outcome record in the remote copy (written before it
stops itself: `ups.remote.outcome`), or a stop recorded by `vast_launch.py stop/destroy`.
A stop made in Vast's web console leaves no record: it is taken for a pause.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Callable, Optional, Protocol

from ups.errors import LaunchError
from ups.launch.vast import VastApiError


class Health(Enum):
    RUNNING = "running"
    STARTING = "starting"  # being created, loading its image, not listed yet
    PAUSED = "paused"  # stopped with no record of why: outbid, or stopped in the web console
    DOWN = "down"  # exited, offline, unknown, or destroyed by someone else
    HUNG = "hung"  # running, but its heartbeat has not advanced for the hang timeout
    BROKEN_HOST = "broken-host"  # the host's docker daemon cannot create the container
    BROKEN_IMAGE = "broken-image"  # the image cannot be pulled: no other host will do better
    COMPLETE = "complete"  # the run recorded success
    FAILED = "failed"  # the run recorded a failure (exit code, phase)
    STOPPED = "stopped"  # a stop or destroy you asked for (recorded before it was made)


_STARTING = {None, "", "created", "loading", "rebooting", "scheduling"}
# dstack compute.py: `actual_status == "created"` with the daemon's error in status_msg
_DAEMON_ERROR = re.compile(r"Error response from daemon|OCI runtime create failed|failed to create", re.I)
_IMAGE_ERROR = re.compile(r"pull access denied|manifest unknown|manifest for \S+ not found|"
                          r"repository does not exist|invalid reference format|not found: manifest", re.I)


@dataclass(frozen=True)
class Observation:
    """One poll: the `show instance` row and the evidence the remote and your records hold."""

    row: Optional[dict]
    seen_before: bool = False  # the row was non-null at least once
    outcome: Optional[str] = None  # completed | failed | stop_requested, recorded for this instance
    outcome_detail: str = ""
    stop_requested: bool = False  # by `vast_launch.py stop/destroy` on this machine
    hung_for_s: float = 0.0  # running with a heartbeat that has not advanced for this long


def is_stopped_row(row: dict) -> bool:
    return "stopped" in (row.get("cur_state"), row.get("intended_status"), row.get("next_state"),
                         row.get("actual_status"))


def assess(obs: Observation, hang_timeout_s: float = 0.0) -> tuple[Health, str]:
    """What one observation means, and why (evidence first, then the row)."""
    if obs.outcome == "completed":
        return Health.COMPLETE, f"the run recorded success ({obs.outcome_detail})"
    if obs.outcome == "failed":
        return Health.FAILED, f"the run recorded a failure ({obs.outcome_detail})"
    row = obs.row
    if (obs.outcome == "stop_requested" or obs.stop_requested) and (row is None or is_stopped_row(row)):
        # the record is written before the stop is asked for: it counts once Vast shows the stop
        return Health.STOPPED, "stopped or destroyed on request (recorded before it was asked); not relaunching"
    if row is None:
        if obs.seen_before:
            return Health.DOWN, "no longer exists (destroyed, with no recorded outcome or stop)"
        return Health.STARTING, "not listed yet (Vast answers a null row for a moment after create)"
    msg = str(row.get("status_msg") or "")
    if row.get("actual_status") == "created" and (_DAEMON_ERROR.search(msg) or _IMAGE_ERROR.search(msg)):
        if _IMAGE_ERROR.search(msg):
            return Health.BROKEN_IMAGE, f"its image cannot be pulled: {msg[:300]}"
        return Health.BROKEN_HOST, f"the host cannot create its container: {msg[:300]}"
    if is_stopped_row(row):
        return Health.PAUSED, ("stopped with no recorded outcome or stop: outbid, or stopped in the web "
                               "console (Vast shows both alike)")
    if row.get("actual_status") == "running":
        if hang_timeout_s > 0 and obs.hung_for_s >= hang_timeout_s:
            return Health.HUNG, (f"running, but its heartbeat has not advanced for {_secs(obs.hung_for_s)} "
                                 f"(--hang-timeout {_secs(hang_timeout_s)})")
        return Health.RUNNING, "running"
    if row.get("actual_status") in _STARTING:
        return Health.STARTING, f"{row.get('actual_status') or 'no status yet'}"
    return Health.DOWN, f"{row.get('actual_status')}"


@dataclass(frozen=True)
class WatchPolicy:
    down_timeout_s: float = 600.0
    paused_timeout_s: float = 1800.0
    start_timeout_s: float = 1800.0
    max_relaunches: int = 3
    hang_timeout_s: float = 0.0  # 0: off
    listing_grace_s: float = 120.0  # how long the id you gave may be unlisted before it is an error

    def timeout_for(self, health: Health) -> float:
        if health is Health.PAUSED:
            return self.paused_timeout_s
        if health is Health.STARTING:
            return self.start_timeout_s
        if health in (Health.HUNG, Health.BROKEN_HOST):
            return 0.0  # already waited for (the hang timeout), or cannot get better
        return self.down_timeout_s


class Action(Enum):
    WAIT = "wait"
    RELAUNCH = "relaunch"
    DONE = "done"  # exit 0
    FAILED = "failed"  # exit 1: the run itself failed, or its image cannot run
    GIVE_UP = "give-up"  # exit 1: lost again after max_relaunches


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(health: Health, why: str, unhealthy_for_s: float, relaunches: int, policy: WatchPolicy) -> Decision:
    """What to do about an instance seen as `health`, unhealthy for `unhealthy_for_s`."""
    if health in (Health.COMPLETE, Health.STOPPED):
        return Decision(Action.DONE, why)
    if health is Health.FAILED:
        return Decision(Action.FAILED, f"{why}; read its logs")
    if health is Health.BROKEN_IMAGE:
        return Decision(Action.FAILED, f"{why}; fix --image")
    if health is Health.RUNNING:
        return Decision(Action.WAIT, why)
    timeout, took = policy.timeout_for(health), _secs(unhealthy_for_s)
    if unhealthy_for_s < timeout:
        return Decision(Action.WAIT, f"{why}: {health.value} for {took} of {_secs(timeout)} allowed")
    if relaunches >= policy.max_relaunches:
        return Decision(Action.GIVE_UP, f"{why}: {health.value} for {took} and "
                                        f"{relaunches} of {policy.max_relaunches} relaunches used")
    return Decision(Action.RELAUNCH, f"{why}: {health.value} for {took} (limit {_secs(timeout)}); "
                                     f"relaunch {relaunches + 1} of {policy.max_relaunches}")


def _secs(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


class InstanceApi(Protocol):
    def show_instance(self, instance_id: int) -> dict | None: ...
    def destroy(self, instance_id: int, missing_ok: bool = True) -> bool: ...


class Evidence(Protocol):
    """What the remote copy and your own records say about an instance."""

    def outcome(self, instance_id: int) -> tuple[str, str] | None: ...  # (outcome, detail)
    def stop_requested(self, instance_id: int) -> bool: ...
    def heartbeat(self) -> str | None: ...  # anything that changes when the run advances


class NoEvidence:
    def outcome(self, instance_id: int) -> tuple[str, str] | None:
        return None

    def stop_requested(self, instance_id: int) -> bool:
        return False

    def heartbeat(self) -> str | None:
        return None


class NoOfferError(LaunchError):
    """No offer matches right now; the watch keeps the old instance and tries again."""


def stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Watched:
    instance_id: int
    started: float
    relaunches: int = 0
    unhealthy_since: Optional[float] = None
    seen: bool = False
    beat: Optional[str] = None
    beat_since: Optional[float] = None  # when the heartbeat last changed (or running was first seen)
    last: Optional[tuple] = field(default=None)


def _observe(api: InstanceApi, evidence: Evidence, w: _Watched, now: float, policy: WatchPolicy) -> Observation:
    row = api.show_instance(w.instance_id)
    if row is None and not w.seen and w.relaunches == 0 and now - w.started > policy.listing_grace_s:
        raise LaunchError(f"instance {w.instance_id} not found after {_secs(now - w.started)}: "
                          "check the id with `vast_launch.py status`")
    seen_before, w.seen = w.seen, w.seen or row is not None
    recorded = evidence.outcome(w.instance_id)
    hung_for = 0.0
    if row is not None and row.get("actual_status") == "running" and policy.hang_timeout_s > 0:
        beat = evidence.heartbeat()
        if w.beat_since is None or beat != w.beat:
            w.beat, w.beat_since = beat, now
        hung_for = now - w.beat_since
    return Observation(row, seen_before, recorded[0] if recorded else None, recorded[1] if recorded else "",
                       evidence.stop_requested(w.instance_id), hung_for)


def _replace(api: InstanceApi, w: _Watched, relaunch: Callable[[], int], log: Callable[[str], None],
             now: float) -> None:
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
    relaunches = w.relaunches + 1
    w.__init__(new_id, now, relaunches)  # a fresh record: new id, nothing seen yet


def watch(
    api: InstanceApi,
    instance_id: int,
    policy: WatchPolicy,
    relaunch: Callable[[], int],
    poll_s: float = 60.0,
    log: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    evidence: Evidence | None = None,
) -> tuple[Decision, int]:
    """Poll until the run ends; returns the final decision and the last instance id."""
    evidence = evidence or NoEvidence()
    w = _Watched(instance_id, clock())
    while True:
        now = clock()
        try:
            obs = _observe(api, evidence, w, now, policy)
        except VastApiError as e:  # a blip of the API is not a lost instance
            if not e.transient:
                raise
            log(f"{stamp()} watch: {e}; trying again in {poll_s:.0f}s")
            sleep(poll_s)
            continue
        health, why = assess(obs, policy.hang_timeout_s)
        if health is Health.RUNNING:
            w.unhealthy_since = None
        elif w.unhealthy_since is None:
            w.unhealthy_since = now
        unhealthy_for = 0.0 if w.unhealthy_since is None else now - w.unhealthy_since
        decision = decide(health, why, unhealthy_for, w.relaunches, policy)
        if (health, decision.action) != w.last or decision.action is not Action.WAIT:
            log(f"{stamp()} watch: instance {w.instance_id} {health.value} -> "
                f"{decision.action.value}: {decision.reason}")
        w.last = (health, decision.action)
        if decision.action is Action.RELAUNCH:
            try:
                _replace(api, w, relaunch, log, clock())
            except NoOfferError as e:
                log(f"{stamp()} watch: {e}; trying again in {poll_s:.0f}s")
            except VastApiError as e:
                if not e.transient:
                    raise VastApiError(f"{e}; instance {w.instance_id} was left as is (destroy it with "
                                       f"vast_launch.py destroy {w.instance_id} --yes, or rerun watch)") from e
                log(f"{stamp()} watch: could not rent a replacement ({e}); trying again in {poll_s:.0f}s")
        elif decision.action is not Action.WAIT:
            if health is Health.BROKEN_IMAGE:  # it can never run: nothing is left billing
                api.destroy(w.instance_id, missing_ok=True)
            return decision, w.instance_id
        sleep(poll_s)
