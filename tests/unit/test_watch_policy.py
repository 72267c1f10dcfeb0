"""The watch policy: what an observation means and what to do about it, without a network."""

from __future__ import annotations

import pytest

from ups.errors import LaunchError
from ups.launch.vast import VastApiError
from ups.launch.watch import (
    Action, Health, NoOfferError, Observation, WatchPolicy, assess, decide, watch,
)

POLICY = WatchPolicy(down_timeout_s=600, paused_timeout_s=1800, start_timeout_s=900, max_relaunches=2)
STOPPED = {"cur_state": "stopped", "intended_status": "stopped", "next_state": "stopped", "actual_status": "exited"}


def r(actual="running", **fields):
    return {"actual_status": actual, "intended_status": "running", "cur_state": "running",
            "next_state": "running", **fields}


def seen(row, **evidence) -> Health:
    return assess(Observation(row, seen_before=True, **evidence), hang_timeout_s=100)[0]


@pytest.mark.parametrize("actual, health", [
    ("running", Health.RUNNING),
    ("loading", Health.STARTING),
    ("created", Health.STARTING),
    (None, Health.STARTING),
    ("exited", Health.DOWN),
    ("offline", Health.DOWN),
    ("unknown", Health.DOWN),
    ("some-new-status", Health.DOWN),
])
def test_status_of_an_instance_that_wants_to_run_is_classified(actual, health):
    assert seen(r(actual)) is health


def test_an_outbid_instance_is_paused_not_finished():
    # Vast shows an outbid instance exactly as a stop you asked for
    assert seen(dict(STOPPED)) is Health.PAUSED


def test_a_recorded_stop_ends_the_watch_once_vast_shows_it():
    assert seen(dict(STOPPED), stop_requested=True) is Health.STOPPED
    assert seen(None, outcome="stop_requested") is Health.STOPPED
    assert seen(r("running"), stop_requested=True) is Health.RUNNING  # the stop has not happened (yet)


def test_the_recorded_outcome_outranks_the_row():
    assert seen(dict(STOPPED), outcome="completed") is Health.COMPLETE
    health, why = assess(Observation(dict(STOPPED), True, "failed", "exit code 3 in data"))
    assert health is Health.FAILED and "exit code 3 in data" in why


def test_a_null_row_is_starting_before_the_first_sighting_and_down_after():
    assert assess(Observation(None, seen_before=False))[0] is Health.STARTING
    assert assess(Observation(None, seen_before=True))[0] is Health.DOWN


def test_a_daemon_error_is_read_from_status_msg():
    pull = r("created", status_msg="Error response from daemon: pull access denied for no/such")
    assert seen(pull) is Health.BROKEN_IMAGE
    host = r("created", status_msg="Error response from daemon: OCI runtime create failed: nvidia")
    assert seen(host) is Health.BROKEN_HOST


def test_a_running_instance_whose_heartbeat_stalls_is_hung():
    assert seen(r("running"), hung_for_s=99) is Health.RUNNING
    assert seen(r("running"), hung_for_s=100) is Health.HUNG


def test_running_instance_is_left_alone():
    assert decide(Health.RUNNING, "", 0, 0, POLICY).action is Action.WAIT


def test_down_instance_waits_out_the_down_timeout_then_relaunches():
    assert decide(Health.DOWN, "", 599, 0, POLICY).action is Action.WAIT
    decision = decide(Health.DOWN, "", 600, 0, POLICY)
    assert decision.action is Action.RELAUNCH
    assert "relaunch 1 of 2" in decision.reason


def test_paused_instance_gets_the_longer_stopped_timeout():
    assert decide(Health.PAUSED, "", 1000, 0, POLICY).action is Action.WAIT
    assert decide(Health.PAUSED, "", 1800, 0, POLICY).action is Action.RELAUNCH


def test_instance_stuck_starting_is_relaunched_after_the_start_timeout():
    assert decide(Health.STARTING, "", 899, 0, POLICY).action is Action.WAIT
    assert decide(Health.STARTING, "", 900, 0, POLICY).action is Action.RELAUNCH


def test_a_hung_run_and_a_broken_host_are_replaced_at_once():
    assert decide(Health.HUNG, "", 0, 0, POLICY).action is Action.RELAUNCH
    assert decide(Health.BROKEN_HOST, "", 0, 0, POLICY).action is Action.RELAUNCH


def test_watch_gives_up_when_relaunches_are_used_up():
    decision = decide(Health.DOWN, "", 601, 2, POLICY)
    assert decision.action is Action.GIVE_UP
    assert "2 of 2" in decision.reason


@pytest.mark.parametrize("health, action", [
    (Health.COMPLETE, Action.DONE),
    (Health.STOPPED, Action.DONE),
    (Health.FAILED, Action.FAILED),
    (Health.BROKEN_IMAGE, Action.FAILED),
])
def test_terminal_states_end_the_watch_without_a_relaunch(health, action):
    assert decide(health, "", 10_000, 0, POLICY).action is action


class FakeApi:
    """In-memory instances: each id plays a list of rows (the last one repeats)."""

    def __init__(self, timelines):
        self.timelines = timelines
        self.destroyed = []

    def show_instance(self, instance_id):
        rows = self.timelines.get(instance_id)
        if rows is None:
            return None
        return rows.pop(0) if len(rows) > 1 else rows[0]

    def destroy(self, instance_id, missing_ok=True):
        self.destroyed.append(instance_id)
        return self.timelines.pop(instance_id, None) is not None


class Records:
    """The remote's outcome records and heartbeat, and your recorded stops."""

    def __init__(self):
        self.outcomes, self.stops, self.beat = {}, set(), None

    def outcome(self, instance_id):
        return self.outcomes.get(instance_id)

    def stop_requested(self, instance_id):
        return instance_id in self.stops

    def heartbeat(self):
        return self.beat


class Clock:
    def __init__(self):
        self.now = 0.0
        self.on_sleep = lambda now: None

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.on_sleep(self.now)


def run_watch(api, relaunch, policy=POLICY, poll=100, records=None, clock=None):
    clock, lines = clock or Clock(), []
    decision, last = watch(api, 1, policy, relaunch, poll, log=lines.append, clock=clock, sleep=clock.sleep,
                           evidence=records or Records())
    return decision, last, lines


def test_lost_instance_is_replaced_then_the_replacement_completes():
    api, records = FakeApi({1: [r("running"), r("exited")]}), Records()

    def relaunch():
        api.timelines[2] = [r("loading"), r("running"), r("running")]
        records.outcomes[2] = ("completed", "exit code 0")
        return 2

    decision, last, lines = run_watch(api, relaunch, records=records)
    assert decision.action is Action.DONE and last == 2
    assert api.destroyed == [1]
    assert any("relaunch 1 of 2" in line for line in lines)
    assert all(line[:4].isdigit() and line[10] == "T" for line in lines)  # timestamped


def test_an_outbid_instance_is_waited_for_then_replaced_and_destroyed():
    api = FakeApi({1: [r("running")] + [dict(STOPPED)] * 30})
    records = Records()

    def relaunch():
        api.timelines[2] = [r("running")]
        records.outcomes[2] = ("completed", "")
        return 2

    decision, last, lines = run_watch(api, relaunch, records=records)
    assert decision.action is Action.DONE and last == 2 and api.destroyed == [1]
    assert any("paused -> relaunch" in line and "outbid" in line for line in lines)


def test_an_outbid_instance_that_comes_back_is_kept():
    api, records = FakeApi({1: [r("running"), dict(STOPPED), dict(STOPPED), r("running"), r("running")]}), Records()
    clock = Clock()
    clock.on_sleep = lambda now: records.outcomes.update({1: ("completed", "")}) if now >= 500 else None
    decision, last, _ = run_watch(api, lambda: pytest.fail("must not relaunch"), records=records, clock=clock)
    assert decision.action is Action.DONE and last == 1 and api.destroyed == []


def test_a_stop_you_recorded_ends_the_watch_without_a_relaunch():
    api, records = FakeApi({1: [r("running"), dict(STOPPED)]}), Records()
    records.stops.add(1)
    decision, _, lines = run_watch(api, lambda: pytest.fail("must not relaunch"), records=records)
    assert decision.action is Action.DONE and "on request" in decision.reason


def test_a_run_that_recorded_a_failure_is_reported_as_failed():
    api, records = FakeApi({1: [r("running"), dict(STOPPED)]}), Records()
    records.outcomes[1] = ("failed", "exit code 1 in train")
    decision, _, _ = run_watch(api, lambda: pytest.fail("must not relaunch"), records=records)
    assert decision.action is Action.FAILED and "exit code 1 in train" in decision.reason


def test_a_hung_run_is_replaced_after_the_hang_timeout():
    api, records = FakeApi({1: [r("running")]}), Records()
    records.beat = "operator-step-4@1000"

    def relaunch():
        api.timelines[2] = [r("running")]
        records.outcomes[2] = ("completed", "")
        return 2

    policy = WatchPolicy(hang_timeout_s=1000, max_relaunches=1)
    decision, last, lines = run_watch(api, relaunch, policy=policy, records=records)
    assert last == 2 and api.destroyed == [1]
    assert any("hung -> relaunch" in line and "heartbeat has not advanced" in line for line in lines)


def test_an_advancing_heartbeat_keeps_a_long_run():
    api, records, clock = FakeApi({1: [r("running")]}), Records(), Clock()

    def tick(now):
        records.beat = f"operator-step-{int(now // 500)}"
        if now >= 5000:
            records.outcomes[1] = ("completed", "")
    clock.on_sleep = tick
    policy = WatchPolicy(hang_timeout_s=1000)
    decision, last, _ = run_watch(api, lambda: pytest.fail("must not relaunch"), policy=policy, records=records,
                                  clock=clock)
    assert decision.action is Action.DONE and last == 1


def test_an_image_that_cannot_be_pulled_is_reported_at_once_and_destroyed():
    pull = r("created", status_msg="Error response from daemon: manifest for no/such:1 not found")
    api = FakeApi({1: [pull]})
    decision, _, lines = run_watch(api, lambda: pytest.fail("must not relaunch"))
    assert decision.action is Action.FAILED and "manifest for no/such:1 not found" in decision.reason
    assert api.destroyed == [1] and len(lines) == 1


def test_watch_gives_up_after_max_relaunches_and_leaves_the_last_instance():
    api = FakeApi({1: [r("exited")]})
    ids = iter(range(2, 10))

    def relaunch():
        new = next(ids)
        api.timelines[new] = [r("offline")]
        return new

    decision, last, _ = run_watch(api, relaunch)
    assert decision.action is Action.GIVE_UP
    assert last == 3 and api.destroyed == [1, 2]


def test_no_offer_keeps_the_old_instance_and_retries():
    api, records = FakeApi({1: [r("exited")] * 4 + [dict(STOPPED)]}), Records()
    attempts = []

    def relaunch():
        attempts.append(1)
        records.stops.add(1)  # the user stopped it meanwhile
        raise NoOfferError("no offer matches")

    decision, last, lines = run_watch(api, relaunch, WatchPolicy(down_timeout_s=150, max_relaunches=2),
                                      records=records)
    assert attempts and api.destroyed == [] and last == 1
    assert decision.action is Action.DONE
    assert any("no offer matches" in line for line in lines)


def test_a_new_instance_may_be_unlisted_for_a_moment():
    api = FakeApi({})
    clock = Clock()
    clock.on_sleep = lambda now: api.timelines.setdefault(1, [r("running"), dict(STOPPED)]) if now >= 100 else None
    records = Records()
    records.stops.add(1)
    decision, _, _ = run_watch(api, lambda: 2, records=records, clock=clock)
    assert decision.action is Action.DONE


def test_unknown_instance_id_is_an_error_after_the_listing_grace():
    with pytest.raises(LaunchError, match="instance 1 not found"):
        run_watch(FakeApi({}), lambda: 2)


def test_an_api_outage_is_retried_not_taken_for_a_lost_instance():
    api, records = FakeApi({1: [r("running"), r("running")]}), Records()
    real_show, failures = api.show_instance, iter([True, True, False, False])

    def flaky_show(instance_id):
        if next(failures):
            raise VastApiError("cannot reach the Vast API", transient=True)
        records.outcomes[1] = ("completed", "")
        return real_show(instance_id)

    api.show_instance = flaky_show
    decision, _, lines = run_watch(api, lambda: pytest.fail("must not relaunch"), records=records)
    assert decision.action is Action.DONE
    assert sum("cannot reach the Vast API" in line for line in lines) == 2


def test_a_refusal_by_the_api_ends_the_watch_with_its_error():
    api = FakeApi({1: [r("running")]})

    def refused(instance_id):
        raise VastApiError("Vast API refused show instance 1: HTTP 401")

    api.show_instance = refused
    with pytest.raises(VastApiError, match="HTTP 401"):
        run_watch(api, lambda: 2)


def test_a_refused_replacement_ends_the_watch_naming_the_instance_left_behind():
    api = FakeApi({1: [r("exited")]})

    def refused():
        raise VastApiError("Vast API refused create instance from offer 501: HTTP 400: bid too low; "
                           "it created instance 9 anyway, which was destroyed")

    with pytest.raises(VastApiError, match="instance 9 anyway.*instance 1 was left as is"):
        run_watch(api, refused)
    assert api.destroyed == []


def test_a_rate_limited_replacement_is_tried_again_next_poll():
    api, records, attempts = FakeApi({1: [r("exited")]}), Records(), []

    def relaunch():
        attempts.append(1)
        if len(attempts) == 1:
            raise VastApiError("Vast API refused create ...: HTTP 429 (still refused after 60s)", transient=True)
        api.timelines[2] = [r("running")]
        records.outcomes[2] = ("completed", "")
        return 2

    decision, last, lines = run_watch(api, relaunch, records=records)
    assert decision.action is Action.DONE and last == 2 and len(attempts) == 2
    assert any("could not rent a replacement" in line for line in lines)
