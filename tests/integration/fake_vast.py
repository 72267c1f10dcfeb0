"""A strict local stand-in for the Vast.ai REST API, so the real `vastai` client can be driven.

Tests point the SDK at it through `VAST_URL` (or `VastApi(server_url=...)`). It serves
the endpoints the launcher uses, records every request, and plays a per-instance
"timeline" of rows so a test can script an instance that runs, is outbid, comes back...

It is built from the published contract and is at least as strict as the service:

- docs  = vast-ai/docs, api-reference/openapi/yaml/<file>.yaml and
          api-reference/rate-limits-and-errors.mdx, guides/reference/faq/rental-types.mdx
- sdk   = the `vastai` package (vastai/api/instances.py, vastai/api/client.py)
- dstack = dstackai/dstack, src/dstack/_internal/core/backends/vastai/{api_client,compute}.py

Where the contract is silent the choice made is the stricter one, and says so.

Test knob: rate limits are real by default. `FakeVast(time_scale=s)` multiplies every
interval by `s` so a test of many calls stays fast; the launcher's backoff reads the same
factor from `UPS_TEST_VAST_TIME_SCALE` (see `ups.launch.ratelimit`), so a test that
scales the fake must pass that variable to the launcher too.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# Per endpoint, per identity minimum interval in seconds (docs: x-rate-limit of
# show_instance 2.0, manage_instance 1.0, destroy_instance 3.0, create_instance 4.5 with
# "penalty: 12", show_instances 1.0). The penalty is not defined in the docs; read
# strictly: a caller refused by create waits `penalty` seconds before the next is accepted.
INTERVALS = {"show": (2.0, 0.0), "manage": (1.0, 0.0), "destroy": (3.0, 0.0), "create": (4.5, 12.0),
             "list": (1.0, 0.0)}
SEARCH_PER_MINUTE = 10  # docs: search_offers.yaml x-rate-limit {requests: 10, per: minute}
# docs: create_instance.yaml x-input-validation
MAX_IMAGE, MAX_LABEL, MAX_ARGS, MAX_ENV_VALUE, MAX_ENV_TOTAL = 1024, 256, 4096, 256, 32768
MIN_DISK, MIN_PRICE, MAX_PRICE = 8.0, 0.001, 128.0
MAX_MANAGE_LABEL = 1024  # docs: manage_instance.yaml / label_instance.yaml

_STOPPED = {"cur_state": "stopped", "intended_status": "stopped", "next_state": "stopped",
            "actual_status": "exited"}
# dstack compute.py: an outbid spot instance shows cur_state == intended_status ==
# next_state == "stopped"; rental-types.mdx: "Your instance is stopped". A stop you ask
# for (manage_instance, state=stopped) is given exactly the same row: nothing tells them apart.
OUTBID = dict(_STOPPED)
# dstack compute.py: a container the daemon cannot create stays actual_status "created"
# with the daemon's error in status_msg.
PULL_FAILED = {"actual_status": "created", "cur_state": "running", "intended_status": "running",
               "next_state": "running",
               "status_msg": "Error response from daemon: pull access denied for no/such-image, "
                             "repository does not exist or may require 'docker login'"}


def row(instance_id: int, actual_status: str | None = "running", **extra) -> dict:
    """A full `show instance` row (docs: show_instance.yaml, schema Instance)."""
    base = {
        "id": instance_id, "actual_status": actual_status, "intended_status": "running",
        "cur_state": "running", "next_state": "running", "label": None, "status_msg": None,
        "start_date": time.time() - 60, "extra_env": [], "gpu_name": "RTX 4090", "num_gpus": 1,
        "dph_total": 0.42, "is_bid": False,
    }
    if actual_status == "outbid":
        return {**base, **OUTBID, **extra}
    if actual_status == "pull_failed":
        return {**base, **PULL_FAILED, **extra}
    return {**base, **extra}


OFFERS = [
    {"id": 501, "gpu_name": "RTX 4090", "num_gpus": 1, "dph_total": 0.35, "min_bid": 0.12, "reliability": 0.995,
     "disk_space": 120.0, "geolocation": "Norway, NO", "hosting_type": 0},
    {"id": 502, "gpu_name": "RTX 4090", "num_gpus": 1, "dph_total": 0.41, "min_bid": 0.15, "reliability": 0.99,
     "disk_space": 200.0, "geolocation": "Texas, US", "hosting_type": 1},
]


def _error(status: int, error: str, msg: str, **extra) -> tuple[int, dict]:
    # docs: rate-limits-and-errors.mdx, "the most common error response shape"
    return status, {"success": False, "error": error, "msg": msg, **extra}


def endpoint(method: str, path: str) -> str | None:
    """Which rate-limited endpoint a request is (None: not limited here)."""
    if method == "POST" and path == "/api/v0/bundles/":
        return "search"
    if method == "GET" and path == "/api/v1/instances/":
        return "list"
    if method == "PUT" and re.fullmatch(r"/api/v0/asks/\d+/", path):
        return "create"
    if re.fullmatch(r"/api/v0/instances/\d+/", path):
        return {"GET": "show", "PUT": "manage", "DELETE": "destroy"}.get(method)
    return None


class RateLimiter:
    """docs: rate-limits-and-errors.mdx: a minimum interval per endpoint and identity."""

    def __init__(self, time_scale: float) -> None:
        self.scale = time_scale
        self.next_ok: dict[tuple[str, str], float] = {}
        self.searches: dict[str, deque] = {}
        self.always: set[str] = set()  # test knob: endpoints refused every time (a limit that never clears)

    def refuse(self, identity: str, name: str | None, now: float) -> str | None:
        """The 429 body for this request, or None when it is allowed."""
        if name is None:
            return None
        if name in self.always:
            return f"API requests too frequent: endpoint threshold={INTERVALS.get(name, (0.0,))[0]}"
        if name == "search":
            times = self.searches.setdefault(identity, deque())
            while times and now - times[0] >= 60.0 * self.scale:
                times.popleft()
            if len(times) >= SEARCH_PER_MINUTE:
                return "API requests too frequent"
            times.append(now)
            return None
        threshold, penalty = INTERVALS[name]
        key = (identity, name)
        if now < self.next_ok.get(key, float("-inf")):
            # Every request restarts the interval, a refused one too; create adds its penalty.
            self.next_ok[key] = now + (threshold + penalty) * self.scale
            return f"API requests too frequent: endpoint threshold={threshold}"
        self.next_ok[key] = now + threshold * self.scale
        return None


def validate_create(body: object) -> tuple[int, dict] | None:
    """docs: create_instance.yaml x-input-validation and its 400 answers."""
    if not isinstance(body, dict) or not body.get("image"):
        return _error(400, "invalid_args", "error 400: Invalid args: 'image' is required")
    if len(str(body["image"])) > MAX_IMAGE:
        return _error(400, "invalid_args", f"error 400: Invalid args: image longer than {MAX_IMAGE} characters")
    if body.get("label") is not None and len(str(body["label"])) > MAX_LABEL:
        return _error(400, "invalid_args", f"error 400: Invalid args: label longer than {MAX_LABEL} characters")
    args = sum(len(json.dumps(body.get(k)) if k == "args" else str(body.get(k) or ""))
               for k in ("args", "args_str", "onstart") if body.get(k))
    if args > MAX_ARGS:
        return _error(400, "invalid_args", f"error 400: Invalid args: args, args_str and onstart "
                                           f"together longer than {MAX_ARGS} characters")
    env = body.get("env") or {}
    values = [str(v) for v in env.values()] if isinstance(env, dict) else [str(env)]
    if any(len(v) > MAX_ENV_VALUE for v in values) or sum(map(len, values)) > MAX_ENV_TOTAL:
        return _error(400, "invalid_args", f"error 400: Invalid args: env values are limited to {MAX_ENV_VALUE} "
                                           f"characters each and {MAX_ENV_TOTAL} in all")
    if not isinstance(body.get("disk"), (int, float)) or body["disk"] < MIN_DISK:
        return _error(400, "invalid_args", f"error 400: Invalid args: disk must be at least {MIN_DISK} GB")
    price = body.get("price")
    if price is not None and not (isinstance(price, (int, float)) and MIN_PRICE <= price <= MAX_PRICE):
        return _error(400, "invalid_price", f"error 400: Invalid price: bid must be in [{MIN_PRICE}, {MAX_PRICE}]")
    return None


def _matches(offer: dict, query: dict) -> bool:
    ops = {"eq": lambda a, b: a == b, "lte": lambda a, b: a <= b, "gte": lambda a, b: a >= b,
           "lt": lambda a, b: a < b, "gt": lambda a, b: a > b}
    for key, cond in query.items():
        if isinstance(cond, dict) and key in offer:
            if not all(op in ops and ops[op](offer[key], v) for op, v in cond.items()):
                return False
    return True


class FakeVast:
    """State of the fake API; `requests` lists (method, path, json body, auth header, status)."""

    def __init__(self, api_key: str = "test-key", time_scale: float = 1.0) -> None:
        self.api_key = api_key
        self.time_scale = time_scale
        self.limiter = RateLimiter(time_scale)
        self.requests: list[tuple[str, str, object, str, int]] = []
        self.offers = [dict(o) for o in OFFERS]
        self.taken: dict[int, int] = {}  # offer id -> 404 or 410 (docs: create_instance.yaml)
        self.timelines: dict[int, list[dict]] = {}
        self.overrides: dict[int, dict] = {}
        self.unlisted: dict[int, int] = {}  # instance id -> show calls still answered with null
        self.new_row_delay = 1  # a just-created instance is null for this many show calls
        self.container_keys: dict[str, int] = {}  # CONTAINER_API_KEY -> the one instance it manages
        self.insufficient_bid_status = 400
        self.created: list[dict] = []  # create payloads that made an instance, in order
        self.next_timelines: list[list] = []  # add_instance steps for the next created instances
        self.logs: dict[int, str] = {}
        self.next_id = 9000
        self.lock = threading.Lock()
        self.url = ""
        self._server: ThreadingHTTPServer | None = None

    # -- test-side helpers ------------------------------------------------
    def add_instance(self, instance_id: int, statuses: list, **extra) -> None:
        """Each step is an actual_status ("outbid", "pull_failed" included), or a dict of row fields."""
        self.timelines[instance_id] = [
            row(instance_id, **{**extra, **s}) if isinstance(s, dict) else row(instance_id, s, **extra)
            for s in statuses
        ]

    def calls(self, method: str | None = None, pattern: str = "", status: int | None = None) -> list[tuple]:
        return [r for r in self.requests if (method is None or r[0] == method) and re.search(pattern, r[1])
                and (status is None or r[4] == status)]

    def start(self) -> str:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def close(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # -- server side ------------------------------------------------------
    def current_row(self, instance_id: int, advance: bool = True) -> dict | None:
        timeline = self.timelines.get(instance_id)
        if not timeline:
            return None
        current = timeline.pop(0) if advance and len(timeline) > 1 else timeline[0]
        return {**current, **self.overrides.get(instance_id, {})}

    def answer(self, method: str, path: str, body: object, auth: str, identity: str) -> tuple[int, object]:
        key = auth.removeprefix("Bearer ")
        if path.startswith("/logs/"):
            return self.route(method, path, body)
        if key in self.container_keys:
            refusal = self.container_scope(self.container_keys[key], method, path, body)
            if refusal:
                return refusal
        elif key != self.api_key:
            # docs: show_instance.yaml 401 example
            return _error(401, "auth_error", "Invalid user key")
        refused = self.limiter.refuse(identity, endpoint(method, path), time.monotonic())
        if refused:
            # docs: rate-limits-and-errors.mdx: HTTP 429, often a plain-text body, no Retry-After
            return 429, refused
        return self.route(method, path, body)

    def container_scope(self, own: int, method: str, path: str, body: object) -> tuple[int, dict] | None:
        # CONTAINER_API_KEY: the key Vast puts in an instance is scoped to that instance;
        # the contract does not list its rights, so this allows only what self-stop
        # needs: start/stop (manage, body {"state": ...} alone) and destroy, own instance.
        m = re.fullmatch(r"/api/v0/instances/(\d+)/", path)
        if m and int(m.group(1)) == own:
            if method == "DELETE" or (method == "PUT" and isinstance(body, dict) and set(body) == {"state"}):
                return None
        return _error(403, "forbidden", f"this instance API key may only start, stop or destroy instance {own}")

    def route(self, method: str, path: str, body: object) -> tuple[int, object]:
        if method == "POST" and path == "/api/v0/bundles/":
            query = body if isinstance(body, dict) else {}
            return 200, {"offers": [o for o in self.offers if _matches(o, query)]}
        if method == "GET" and path == "/api/v1/instances/":
            rows = [r for i in list(self.timelines) if i not in self.unlisted and (r := self.current_row(i))]
            return 200, {"instances": rows, "next_token": None}
        if m := re.fullmatch(r"/api/v0/asks/(\d+)/", path):
            return self.create(int(m.group(1)), body)
        if m := re.fullmatch(r"/api/v0/instances/request_logs/(\d+)/", path):
            return 200, {"result_url": f"{self.url}/logs/{m.group(1)}"}
        if m := re.fullmatch(r"/logs/(\d+)", path):
            return 200, self.logs.get(int(m.group(1)), "")
        if m := re.fullmatch(r"/api/v0/instances/(\d+)/", path):
            return self.instance(method, int(m.group(1)), body)
        return 404, {"error": f"fake vast: no route {method} {path}"}

    def create(self, offer_id: int, body: object) -> tuple[int, object]:
        refusal = validate_create(body)
        if refusal:
            return refusal
        offer = next((o for o in self.offers if o["id"] == offer_id), None)
        if offer is None or offer_id in self.taken:
            status = self.taken.get(offer_id, 404)
            # docs: create_instance.yaml 404 / 410 examples
            msg = (f"error 410/3907: no_such_ask Instance type {offer_id} is no longer available." if status == 410
                   else f"error 404/3603: no_such_ask Instance type by id {offer_id} is not available.")
            return _error(status, "invalid_args" if status == 404 else "no_such_ask", msg, ask_id=offer_id)
        new_id, self.next_id = self.next_id, self.next_id + 1
        price = body.get("price")
        if price is not None and price < offer.get("min_bid", 0.0):
            # dstack api_client.py: "Vast.ai creates spot instances in the stopped state and
            # returns an error if the bid is insufficient", with the id in `new_contract`.
            self.add_instance(new_id, ["outbid"], is_bid=True)
            self.created.append(body)
            return _error(self.insufficient_bid_status, "invalid_price",
                          f"bid {price} is below the minimum {offer['min_bid']}; instance created stopped",
                          new_contract=new_id)
        statuses = self.next_timelines.pop(0) if self.next_timelines else ["running"]
        self.add_instance(new_id, statuses, is_bid=price is not None)
        self.unlisted[new_id] = self.new_row_delay
        self.created.append(body)
        return 200, {"success": True, "new_contract": new_id}

    def instance(self, method: str, instance_id: int, body: object) -> tuple[int, object]:
        if method == "GET":
            # sdk instances.show_instance: `r.json()["instances"]` may be None (unknown id);
            # dstack api_client.get_instance returns it as Optional. A just-created
            # instance is not listed for a moment either.
            if self.unlisted.get(instance_id, 0) > 0:
                self.unlisted[instance_id] -= 1
                return 200, {"instances": None}
            self.unlisted.pop(instance_id, None)
            return 200, {"instances": self.current_row(instance_id)}
        if instance_id not in self.timelines:
            # dstack api_client.destroy_instance: error "no_such_instance" means already gone;
            # manage_instance.yaml lists the same error.
            return _error(404, "no_such_instance", f"Instance {instance_id} not found")
        if method == "DELETE":
            del self.timelines[instance_id]  # destroyed: from now on a null row
            self.overrides.pop(instance_id, None)
            return 200, {"success": True}
        if method == "PUT" and isinstance(body, dict) and body:
            changes = self.overrides.setdefault(instance_id, {})
            if "label" in body:
                if len(str(body["label"])) > MAX_MANAGE_LABEL:
                    return _error(400, "label_too_long", f"label longer than {MAX_MANAGE_LABEL} characters")
                changes["label"] = body["label"]
            if body.get("state") == "stopped":
                changes.update(OUTBID)  # the same row an outbid instance shows
            elif body.get("state") == "running":
                changes.update(cur_state="running", intended_status="running", next_state="running",
                               actual_status="running")
            return 200, {"success": True}
        return _error(400, "invalid_args", "error 400: Invalid args: give state or label")


def _handler(fake: FakeVast) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            path = urlsplit(self.path).path
            size = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(size) if size else b""
            body = json.loads(raw) if raw else None
            auth = self.headers.get("Authorization", "")
            # docs: "identity is determined by: bearer token + ... + client IP"
            identity = f"{auth}|{self.client_address[0]}"
            with fake.lock:
                status, answer = fake.answer(self.command, path, body, auth, identity)
                fake.requests.append((self.command, path, body, auth, status))
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = _serve

        def log_message(self, *args) -> None:  # keep test output clean
            pass

    return Handler
