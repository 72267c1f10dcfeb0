"""How long to wait before retrying a Vast API call the service refused with HTTP 429.

Why: Vast limits each endpoint per identity to a minimum interval between calls
(vast-ai/docs, api-reference/openapi/yaml/*.yaml `x-rate-limit`: show instance 2.0 s,
manage (start/stop/label) 1.0 s, destroy 3.0 s, create 4.5 s with a 12 s penalty, list
1.0 s, search 10 a minute) and answers a call that comes too soon with 429 and a plain
`API requests too frequent` body, without `Retry-After`
(api-reference/rate-limits-and-errors.mdx: "clients should apply their own backoff").
The `vastai` SDK's own retry waits 0.15 s and 0.225 s (vastai/api/client.py), far
under every threshold, so the launcher turns it off and waits here instead: the
endpoint's threshold (plus its penalty) first, doubling, capped, until at least
`MIN_TOTAL_WAIT_S` have passed in all, then it gives up with the API's message.

Test knob: `UPS_TEST_VAST_TIME_SCALE` (a factor, default 1) scales every wait, inert
unless set; the strict test stand-in scales its limits by the same factor.
"""

from __future__ import annotations

import os

# endpoint -> (minimum interval s, penalty s); sources above
THRESHOLDS = {
    "show": (2.0, 0.0), "manage": (1.0, 0.0), "destroy": (3.0, 0.0), "create": (4.5, 12.0),
    "list": (1.0, 0.0), "search": (60.0 / 10, 0.0), "logs": (1.0, 0.0),
}
MARGIN = 1.1  # wait a little more than the threshold: clocks and latency differ
MAX_SINGLE_WAIT_S = 30.0
MIN_TOTAL_WAIT_S = 60.0
TIME_SCALE_ENV = "UPS_TEST_VAST_TIME_SCALE"


def time_scale() -> float:
    raw = os.environ.get(TIME_SCALE_ENV, "")
    try:
        return float(raw) if raw else 1.0
    except ValueError:
        return 1.0


def backoff_waits(endpoint: str) -> list[float]:
    """The waits (seconds, unscaled) between retries of one call: bounded, >= a minute in all."""
    threshold, penalty = THRESHOLDS[endpoint]
    wait, waits = (threshold + penalty) * MARGIN, []
    while sum(waits) < MIN_TOTAL_WAIT_S:
        waits.append(min(wait, MAX_SINGLE_WAIT_S))
        wait *= 2
    return waits


def spacing(endpoint: str) -> float:
    """Seconds (scaled) to leave between two calls of one endpoint so neither is refused."""
    threshold, _ = THRESHOLDS[endpoint]
    return threshold * MARGIN * time_scale()
