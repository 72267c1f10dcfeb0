"""The watch policy: what an observation means and what to do about it, without a network."""

from __future__ import annotations

import pytest

from ups.errors import LaunchError
from ups.launch.self_stop import LABEL_COMPLETE, LABEL_FAILED, LABEL_TRAINING
from ups.launch.vast import VastApiError
from ups.launch.watch import (
    Action, Health, NoOfferError, Observation, WatchPolicy, classify, decide, watch,
)

POLICY = WatchPolicy(down_timeout_s=600, paused_timeout_s=1800, start_timeout_s=900, max_relaunches=2)


def seen(actual, intended="running", label=LABEL_TRAINING) -> Health:
    return classify(Observation(True, actual, intended, label))


@pytest.mark.parametrize("actual, health", [
    ("running", Health.RUNNING),
    ("loading", Health.STARTING),
    (None, Health.STARTING),
    ("stopped", Health.PAUSED),
    ("exited", Health.DOWN),
    ("offline", Health.DOWN),
    ("unknown", Health.DOWN),
    ("some-new-status", Health.DOWN),
])
def test_status_of_an_instance_that_wants_to_run_is_classified(actual, health):
    assert seen(actual) is health


def test_completion_label_outranks_an_exited_status():
    assert seen("exited", label=LABEL_COMPLETE) is Health.COMPLETE
    assert seen("stopped", intended="stopped", label=LABEL_COMPLETE) is Health.COMPLETE


def test_failure_label_is_read_as_failed():
    assert seen("running", label=LABEL_FAILED) is Health.FAILED


def test_a_requested_stop_is_not_a_lost_instance():
    assert seen("exited", intended="stopped") is Health.STOPPED


def test_missing_instance_is_gone():
    assert classify(Observation.from_row(None)) is Health.GONE


def test_running_instance_is_left_alone():
    assert decide(Health.RUNNING, 0, 0, POLICY).action is Action.WAIT


def test_down_instance_waits_out_the_down_timeout_then_relaunches():
    assert decide(Health.DOWN, 599, 0, POLICY).action is Action.WAIT
    decision = decide(Health.DOWN, 600, 0, POLICY)
    assert decision.action is Action.RELAUNCH
    assert "relaunch 1 of 2" in decision.reason


def test_paused_instance_gets_the_longer_stopped_timeout():
    assert decide(Health.PAUSED, 1000, 0, POLICY).action is Action.WAIT
    assert decide(Health.PAUSED, 1800, 0, POLICY).action is Action.RELAUNCH


def test_instance_stuck_starting_is_relaunched_after_the_start_timeout():
    assert decide(Health.STARTING, 899, 0, POLICY).action is Action.WAIT
    assert decide(Health.STARTING, 900, 0, POLICY).action is Action.RELAUNCH


def test_watch_gives_up_when_relaunches_are_used_up():
    decision = decide(Health.DOWN, 601, 2, POLICY)
    assert decision.action is Action.GIVE_UP
    assert "2 of 2" in decision.reason


@pytest.mark.parametrize("health, action", [
    (Health.COMPLETE, Action.DONE),
    (Health.STOPPED, Action.DONE),
    (Health.GONE, Action.DONE),
    (Health.FAILED, Action.FAILED),
])
def test_terminal_states_end_the_watch_without_a_relaunch(health, action):
    assert decide(health, 10_000, 0, POLICY).action is action


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

    def destroy(self, instance_id, missing_ok=False):
        self.destroyed.append(instance_id)
        self.timelines.pop(instance_id, None)


def r(actual, intended="running", label=LABEL_TRAINING):
    return {"actual_status": actual, "intended_status": intended, "label": label}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def run_watch(api, relaunch, policy=POLICY, poll=100):
    clock, lines = Clock(), []
    decision, last = watch(api, 1, policy, relaunch, poll, log=lines.append, clock=clock, sleep=clock.sleep)
    return decision, last, lines


def test_lost_instance_is_replaced_then_the_replacement_completes():
    api = FakeApi({1: [r("running"), r("exited")]})

    def relaunch():
        api.timelines[2] = [r("loading"), r("running"), r("running", label=LABEL_COMPLETE)]
        return 2

    decision, last, lines = run_watch(api, relaunch)
    assert decision.action is Action.DONE and last == 2
    assert api.destroyed == [1]
    assert any("relaunch 1 of 2" in line for line in lines)
    assert all(line[:4].isdigit() and line[10] == "T" for line in lines)  # timestamped


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
    api = FakeApi({1: [r("exited"), r("exited"), r("exited"), r("exited"), r("exited", "stopped")]})
    attempts = []

    def relaunch():
        attempts.append(1)
        raise NoOfferError("no offer matches")

    decision, last, lines = run_watch(api, relaunch, WatchPolicy(down_timeout_s=150, max_relaunches=2))
    assert attempts and api.destroyed == [] and last == 1
    assert decision.action is Action.DONE  # the user stopped it meanwhile
    assert any("no offer matches" in line for line in lines)


def test_unknown_instance_id_is_an_error_not_a_finished_run():
    with pytest.raises(LaunchError, match="instance 1 not found"):
        run_watch(FakeApi({}), lambda: 2)


def test_an_api_outage_is_retried_not_taken_for_a_lost_instance():
    api = FakeApi({1: [r("running"), r("running", label=LABEL_COMPLETE)]})
    real_show, failures = api.show_instance, iter([True, True, False, False])

    def flaky_show(instance_id):
        if next(failures):
            raise VastApiError("cannot reach the Vast API", transient=True)
        return real_show(instance_id)

    api.show_instance = flaky_show
    decision, _, lines = run_watch(api, lambda: pytest.fail("must not relaunch"))
    assert decision.action is Action.DONE
    assert sum("cannot reach the Vast API" in line for line in lines) == 2


def test_a_refusal_by_the_api_ends_the_watch_with_its_error():
    api = FakeApi({1: [r("running")]})

    def refused(instance_id):
        raise VastApiError("Vast API refused show instance 1: HTTP 401")

    api.show_instance = refused
    with pytest.raises(VastApiError, match="HTTP 401"):
        run_watch(api, lambda: 2)
