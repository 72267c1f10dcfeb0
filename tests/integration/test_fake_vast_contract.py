"""The Vast stand-in plays the documented contract, and the launcher's client survives it.

These run at the real, documented thresholds (no time scale): the stand-in must refuse
what Vast refuses, and the real `vastai` SDK behind `VastApi` must wait it out.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.integration.fake_vast import FakeVast
from ups.launch.ratelimit import MIN_TOTAL_WAIT_S, THRESHOLDS, backoff_waits
from ups.launch.vast import VastApi

pytestmark = pytest.mark.timeout(60)
KEY = {"Authorization": "Bearer test-key"}


@pytest.fixture
def vast():
    fake = FakeVast(api_key="test-key")  # real thresholds
    fake.start()
    yield fake
    fake.close()


def test_two_quick_show_calls_at_the_real_threshold_are_refused_then_retried(vast):
    vast.add_instance(42, ["running"])
    lines = []
    api = VastApi(api_key="test-key", server_url=vast.url, log=lines.append)
    assert api.show_instance(42)["actual_status"] == "running"
    assert api.show_instance(42)["actual_status"] == "running"  # 2.0 s apart at least, after one 429
    assert [c[4] for c in vast.calls("GET", "/instances/42/")] == [200, 429, 200]
    assert len(lines) == 1 and "threshold=2.0" in lines[0]


def test_a_refusal_is_plain_text_without_retry_after(vast):
    url = f"{vast.url}/api/v0/instances/1/"
    assert requests.get(url, headers=KEY, timeout=10).status_code == 200
    refused = requests.get(url, headers=KEY, timeout=10)
    assert refused.status_code == 429 and "Retry-After" not in refused.headers
    assert refused.text == "API requests too frequent: endpoint threshold=2.0"
    other = requests.get(url, headers={"Authorization": "Bearer another-key"}, timeout=10)
    assert other.status_code == 401  # per identity: another key is not limited, but unknown


def test_create_within_its_threshold_is_refused_and_the_refusal_adds_a_penalty(vast):
    body = {"image": "pytorch/pytorch", "disk": 10}
    put = lambda: requests.put(f"{vast.url}/api/v0/asks/501/", json=body, headers=KEY, timeout=10)  # noqa: E731
    assert put().status_code == 200
    assert put().status_code == 429
    # refused: the next create is accepted only after threshold + penalty (4.5 + 12 s)
    assert vast.limiter.next_ok[("Bearer test-key|127.0.0.1", "create")] > time.monotonic() + 12
    assert put().status_code == 429


def test_search_allows_ten_a_minute(vast):
    codes = [requests.post(f"{vast.url}/api/v0/bundles/", json={}, headers=KEY, timeout=10).status_code
             for _ in range(11)]
    assert codes == [200] * 10 + [429]


@pytest.mark.parametrize("field, value, error", [
    ("image", "i" * 1025, "invalid_args"), ("label", "l" * 257, "invalid_args"),
    ("onstart", "o" * 4097, "invalid_args"), ("env", {"A": "v" * 257}, "invalid_args"),
    ("env", {f"K{i}": "v" * 256 for i in range(129)}, "invalid_args"), ("disk", 7.9, "invalid_args"),
    ("price", 0.0005, "invalid_price"), ("price", 128.5, "invalid_price"),
])
def test_create_refuses_what_the_input_validation_refuses(vast, field, value, error):
    body = {"image": "pytorch/pytorch", "disk": 10, field: value}
    answer = requests.put(f"{vast.url}/api/v0/asks/501/", json=body, headers=KEY, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["success"] is False and answer.json()["error"] == error and vast.timelines == {}


def test_unknown_and_just_created_instances_are_null_rows(vast):
    vast.limiter.scale = 0.0
    assert requests.get(f"{vast.url}/api/v0/instances/5/", headers=KEY, timeout=10).json() == {"instances": None}
    new = requests.put(f"{vast.url}/api/v0/asks/501/", json={"image": "x", "disk": 10}, headers=KEY,
                       timeout=10).json()["new_contract"]
    rows = [requests.get(f"{vast.url}/api/v0/instances/{new}/", headers=KEY, timeout=10).json()["instances"]
            for _ in range(2)]
    assert rows[0] is None and rows[1]["actual_status"] == "running"


def test_a_requested_stop_looks_exactly_like_an_outbid_pause(vast):
    vast.limiter.scale = 0.0
    vast.add_instance(1, ["running"])
    vast.add_instance(2, ["outbid"])
    requests.put(f"{vast.url}/api/v0/instances/1/", json={"state": "stopped"}, headers=KEY, timeout=10)
    fields = ("cur_state", "intended_status", "next_state", "actual_status")
    one, two = (requests.get(f"{vast.url}/api/v0/instances/{i}/", headers=KEY, timeout=10).json()["instances"]
                for i in (1, 2))
    assert [one[f] for f in fields] == [two[f] for f in fields] == ["stopped", "stopped", "stopped", "exited"]


def test_the_instance_key_may_only_start_stop_or_destroy_its_own_instance(vast):
    vast.limiter.scale = 0.0
    vast.add_instance(77, ["running"])
    vast.add_instance(78, ["running"])
    vast.container_keys["scoped"] = 77
    own, other = f"{vast.url}/api/v0/instances/77/", f"{vast.url}/api/v0/instances/78/"
    auth = {"Authorization": "Bearer scoped"}
    assert requests.put(own, json={"label": "ups:complete"}, headers=auth, timeout=10).status_code == 403
    assert requests.get(own, headers=auth, timeout=10).status_code == 403
    assert requests.put(other, json={"state": "stopped"}, headers=auth, timeout=10).status_code == 403
    assert requests.put(own, json={"state": "stopped"}, headers=auth, timeout=10).status_code == 200
    assert requests.delete(own, headers=auth, timeout=10).status_code == 200
    gone = requests.delete(own, headers=auth, timeout=10)
    assert gone.status_code == 404 and gone.json()["error"] == "no_such_instance"


@pytest.mark.parametrize("endpoint", sorted(THRESHOLDS))
def test_every_backoff_waits_out_the_threshold_and_at_least_a_minute_in_all(endpoint):
    waits = backoff_waits(endpoint)
    threshold, penalty = THRESHOLDS[endpoint]
    assert waits[0] >= threshold + penalty and sum(waits) >= MIN_TOTAL_WAIT_S
    assert len(waits) <= 10 and max(waits) <= 30
