"""A local stand-in for the Vast.ai REST API, so the real `vastai` client can be driven.

Tests point the SDK at it through `VAST_URL` (or `VastApi(server_url=...)`). It serves
the few endpoints the launcher uses, records every request, and plays a per-instance
"timeline" of rows so a test can script an instance that runs, exits, comes back, ...
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def row(instance_id: int, actual_status: str | None = "running", intended: str = "running",
        label: str = "ups:training", **extra) -> dict:
    return {
        "id": instance_id, "actual_status": actual_status, "intended_status": intended, "label": label,
        "start_date": time.time() - 60, "extra_env": [], "gpu_name": "RTX 4090", "num_gpus": 1,
        "dph_total": 0.42, "is_bid": False, **extra,
    }


OFFERS = [
    {"id": 501, "gpu_name": "RTX 4090", "num_gpus": 1, "dph_total": 0.35, "reliability": 0.995,
     "disk_space": 120.0, "geolocation": "Norway, NO", "hosting_type": 0},
    {"id": 502, "gpu_name": "RTX 4090", "num_gpus": 1, "dph_total": 0.41, "reliability": 0.99,
     "disk_space": 200.0, "geolocation": "Texas, US", "hosting_type": 1},
]


class FakeVast:
    """State of the fake API; `requests` lists (method, path, json body, auth header)."""

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.requests: list[tuple[str, str, object, str]] = []
        self.offers = [dict(o) for o in OFFERS]
        self.timelines: dict[int, list[dict]] = {}
        self.overrides: dict[int, dict] = {}
        self.created: list[dict] = []  # create payloads, in order
        self.next_timelines: list[list] = []  # add_instance steps for the next created instances
        self.logs: dict[int, str] = {}
        self.next_id = 9000
        self.lock = threading.Lock()
        self.url = ""
        self._server: ThreadingHTTPServer | None = None

    # -- test-side helpers ------------------------------------------------
    def add_instance(self, instance_id: int, statuses: list, **extra) -> None:
        """Each step is an actual_status, or a dict of row fields (e.g. a label)."""
        self.timelines[instance_id] = [
            row(instance_id, **{**extra, **s}) if isinstance(s, dict) else row(instance_id, s, **extra)
            for s in statuses
        ]

    def calls(self, method: str | None = None, pattern: str = "") -> list[tuple]:
        return [r for r in self.requests if (method is None or r[0] == method) and re.search(pattern, r[1])]

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
    def current_row(self, instance_id: int) -> dict | None:
        timeline = self.timelines.get(instance_id)
        if not timeline:
            return None
        current = timeline.pop(0) if len(timeline) > 1 else timeline[0]
        return {**current, **self.overrides.get(instance_id, {})}

    def route(self, method: str, path: str, body: object) -> tuple[int, object]:
        if method == "POST" and path == "/api/v0/bundles/":
            return 200, {"offers": self.offers}
        if method == "GET" and path == "/api/v1/instances/":
            rows = [r for r in (self.current_row(i) for i in list(self.timelines)) if r]
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
        if not any(o["id"] == offer_id for o in self.offers):
            return 400, {"success": False, "msg": f"offer {offer_id} is not available"}
        new_id, self.next_id = self.next_id, self.next_id + 1
        statuses = self.next_timelines.pop(0) if self.next_timelines else ["running"]
        self.add_instance(new_id, statuses)
        self.created.append(body)
        return 200, {"success": True, "new_contract": new_id}

    def instance(self, method: str, instance_id: int, body: object) -> tuple[int, object]:
        if instance_id not in self.timelines:
            return 404, {"error": "no_such_instance", "msg": f"instance {instance_id} not found"}
        if method == "GET":
            return 200, {"instances": self.current_row(instance_id)}
        if method == "DELETE":
            del self.timelines[instance_id]
            return 200, {"success": True}
        if method == "PUT" and isinstance(body, dict):
            changes = self.overrides.setdefault(instance_id, {})
            if "label" in body:
                changes["label"] = body["label"]
            if body.get("state") == "stopped":
                changes.update(intended_status="stopped", actual_status="stopped")
            return 200, {"success": True}
        return 400, {"error": "bad request"}


def _handler(fake: FakeVast) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            path = urlsplit(self.path).path
            size = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(size) if size else b""
            body = json.loads(raw) if raw else None
            auth = self.headers.get("Authorization", "")
            with fake.lock:
                fake.requests.append((self.command, path, body, auth))
                if not path.startswith("/logs/") and auth != f"Bearer {fake.api_key}":
                    status, answer = 401, {"error": "invalid_api_key", "msg": "bad key"}
                else:
                    status, answer = fake.route(self.command, path, body)
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
