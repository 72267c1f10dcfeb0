"""A W&B server stand-in on loopback that the real SDK (wandb 0.31 and its wandb-core) talks to.

It speaks only the part of the protocol a lookup needs, and answers it the way the
W&B server does; everything else is refused with a 400, so a new call the SDK makes
shows up as a failure rather than as a silent success.

- `POST /graphql` `Viewer` (sent by `wandb.Api()` to verify the key,
  wandb/sdk/wandb_login.py `_verify_login`): the account, or with `status=401` a 401;
- `GetDefaultEntity` (the entity when none is configured): the same account;
- `ServerFeaturesQuery`: no optional features;
- any other query: with `status=` set, that HTTP status and a GraphQL error body (what
  a key without read rights (403), a rate limit (429) or an outage (5xx) look like);
  otherwise the "nothing there" answer, `{"data": {"project": null}}`, which the SDK
  turns into RunNotFoundError / "project ... not found" (wandb/apis/public/runs.py,
  wandb/sdk/artifacts/artifact.py);
- `POST /sdk/otel/v1/metrics` and any other path: recorded (it is the SDK's telemetry),
  answered 200 with an empty body.

Every request is recorded in `requests` (path, GraphQL operation), so a test can also
assert that nothing reached the server at all.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
from typing import Iterator, Optional

VIEWER = {"id": "VXNlcjox", "entity": "ups-test-entity", "username": "ups-test", "email": None,
          "flags": "{}", "teams": {"edges": []}}


def _query_name(query: str) -> Optional[str]:
    match = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
    return match.group(1) if match else None


class WandbServer:
    def __init__(self, status: Optional[int] = None):
        self.status = status  # HTTP status for every lookup query (None: answer "not found")
        self.requests: list[tuple[str, Optional[str]]] = []
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def operations(self) -> list[str]:
        with self._lock:
            return [op or "" for path, op in self.requests if path == "/graphql"]

    def _record(self, path: str, op: Optional[str]) -> None:
        with self._lock:
            self.requests.append((path, op))

    def _answer(self, op: Optional[str]) -> tuple[int, dict]:
        if op in ("Viewer", "GetDefaultEntity"):  # the key's account; the entity when none is configured
            if self.status == 401:
                return 401, {"errors": [{"message": "user is not logged in"}]}
            return 200, {"data": {"viewer": VIEWER}}
        if op == "ServerFeaturesQuery":
            return 200, {"data": {"serverInfo": {"features": []}}}
        if self.status is not None:
            messages = {403: "permission denied", 429: "rate limit exceeded", 500: "internal server error",
                        502: "bad gateway", 503: "service unavailable", 401: "user is not logged in"}
            return self.status, {"errors": [{"message": messages.get(self.status, "error")}]}
        return 200, {"data": {"project": None}}

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/graphql":
                    server._record(self.path, None)
                    return self._send(200, b"")
                try:
                    payload = json.loads(body)
                    # wandb-core sends `operationName` for some queries only: else the query's own name
                    op = payload.get("operationName") or _query_name(payload.get("query") or "")
                except (ValueError, AttributeError):
                    server._record(self.path, "<not json>")
                    return self._send(400, b'{"errors":[{"message":"bad request"}]}')
                server._record(self.path, op)
                status, payload = server._answer(op)
                self._send(status, json.dumps(payload).encode())

            def do_GET(self):  # noqa: N802
                server._record(self.path, None)
                self._send(400, b"")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler

    @contextlib.contextmanager
    def running(self) -> Iterator["WandbServer"]:
        thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
