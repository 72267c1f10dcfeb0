"""A W&B server stand-in on loopback that the real SDK (wandb 0.31 and its wandb-core) talks to.

It speaks only the part of the protocol that ups' lookups and a run's own traffic need,
and answers it the way the W&B server does; everything else is refused with a 400, so a
new call the SDK makes shows up as a failure rather than as a silent success. Query and
mutation texts are wandb-core's (wandb/wandb core/api/graphql/*.graphql).

- `POST /graphql` `Viewer` (sent by `wandb.Api()` to verify the key,
  wandb/sdk/wandb_login.py `_verify_login`): the account, or with `status=401` a 401;
- `GetDefaultEntity` (the entity when none is configured): the same account;
- `ServerFeaturesQuery`: no optional features;
- with `status=` set, any other query: that HTTP status and a GraphQL error body (what
  a key without read rights (403), a rate limit (429) or an outage (5xx) look like);
- a run's life (`runs`, keyed by run id; see `ServerRun`):
  `UpsertBucket` creates or updates it (mutation_run.graphql); a new run whose config
  carries `_wandb.branch_point` of another run is a fork (wandb/sdk/wandb_init.py puts
  `fork_from` there): it starts with that run's history up to the step, or, with
  `fork=False`, the mutation is refused; `RewindRun` (mutation_rewind_run.graphql)
  drops the history after the step and answers the lines kept (`historyLineCount`,
  which wandb-core takes as its file-stream offset, core/internal/runbranch/rewind.go),
  or with `rewind=False` is refused as a server without the feature refuses it;
  `RunResumeStatus` (query_run_resume_status.graphql) answers the summary, whose
  `_step` wandb-core continues after (core/internal/runbranch/resume.go);
  `RunStoppedStatus`: not stopped; `CreateRunFiles`: upload URLs on this server, whose
  `PUT`s are kept in `uploads`;
- `POST /files/<entity>/<project>/<run>/file_stream` (core/internal/filestream): the
  history lines are written at their `offset` (a resumed stream starts where the server
  said its history ends), the summary replaced, `complete`/`exitcode` recorded;
- the public API's run query (`wandb.Api().run`, operation `Run`): the run with its
  summary, and its summary update (`UpsertBucket` with `summaryMetrics` alone);
- any other lookup query: the "nothing there" answer, `{"data": {"project": null}}`,
  which the SDK turns into RunNotFoundError / "project ... not found"
  (wandb/apis/public/runs.py, wandb/sdk/artifacts/artifact.py);
- `POST /sdk/otel/v1/metrics` and any other path: recorded (it is the SDK's telemetry),
  answered 200 with an empty body.

Every request is recorded in `requests` (path, GraphQL operation), so a test can also
assert that nothing reached the server at all.
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Iterator, Optional

VIEWER = {"id": "VXNlcjox", "entity": "ups-test-entity", "username": "ups-test", "email": None,
          "flags": "{}", "teams": {"edges": []}}
_FILE_STREAM = re.compile(r"^/files/([^/]+)/([^/]+)/([^/]+)/file_stream$")
REFUSED = {"rewind": "rewinding runs is not enabled for this entity",
           "fork": "forking runs is not enabled for this entity"}


def _query_name(query: str) -> Optional[str]:
    match = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
    return match.group(1) if match else None


@dataclass
class ServerRun:
    name: str
    project: str
    entity: str
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # one dict per `wandb-history.jsonl` line
    summary: dict = field(default_factory=dict)
    exit_code: Optional[int] = None
    forked_from: Optional[tuple[str, float]] = None
    rewinds: list[float] = field(default_factory=list)

    def steps(self) -> list[int]:
        return [line.get("_step") for line in self.history]

    def bucket(self) -> dict:
        return {"id": f"run-{self.name}", "name": self.name, "displayName": self.name, "description": None,
                "config": json.dumps(self.config), "sweepName": None, "historyLineCount": len(self.history),
                "project": {"id": "p1", "name": self.project, "entity": {"id": "e1", "name": self.entity}}}


class WandbServer:
    def __init__(self, status: Optional[int] = None, rewind: bool = True, fork: bool = True):
        self.status = status  # HTTP status for every lookup query (None: answer "not found")
        self.rewind, self.fork = rewind, fork  # the branching features the server has enabled
        self.runs: dict[str, ServerRun] = {}
        self.uploads: dict[str, bytes] = {}
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

    def _answer(self, op: Optional[str], variables: dict) -> tuple[int, dict]:
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
        handler = getattr(self, f"_op_{op}", None)
        if handler is not None:
            with self._lock:
                return handler(variables)
        return 200, {"data": {"project": None}}

    # -- a run's own traffic -------------------------------------------------------------

    def add_run(self, name: str, project: str = "ups", summary: Optional[dict] = None) -> ServerRun:
        """A run as a training left it (for the public API's reads and writes)."""
        with self._lock:
            run = self.runs[name] = ServerRun(name, project, VIEWER["entity"], summary=dict(summary or {}))
        return run

    def _op_UpsertBucket(self, v: dict) -> tuple[int, dict]:  # noqa: N802 - the operation's name
        # wandb-core names the run; the public API (`Run.update`, `HTTPSummary._write`) sends its storage id
        name = v.get("name") or str(v.get("id") or "").removeprefix("run-")
        run = self.runs.get(name)
        inserted = run is None
        if inserted:
            config = json.loads(v.get("config") or "{}")
            branch = ((config.get("_wandb") or {}).get("value") or {}).get("branch_point") or {}
            source = self.runs.get(branch.get("run_id") or "")
            if branch and branch.get("run_id") != name:
                if not self.fork:
                    return 200, {"errors": [{"message": REFUSED["fork"]}], "data": {"upsertBucket": None}}
                if source is None:
                    return 200, {"errors": [{"message": f"run {branch.get('run_id')} not found"}],
                                 "data": {"upsertBucket": None}}
            run = ServerRun(name, v.get("project") or "uncategorized", v.get("entity") or VIEWER["entity"])
            if source is not None and branch.get("run_id") != name:
                run.forked_from = (source.name, float(branch["step"]))
                run.history = [dict(h) for h in source.history if h.get("_step", 0) <= branch["step"]]
            self.runs[name] = run
        if v.get("config"):
            run.config = json.loads(v["config"])
        if v.get("summaryMetrics"):
            run.summary.update(json.loads(v["summaryMetrics"]))
        return 200, {"data": {"upsertBucket": {"bucket": run.bucket(), "inserted": inserted}}}

    def _op_RewindRun(self, v: dict) -> tuple[int, dict]:  # noqa: N802
        if not self.rewind:
            return 200, {"errors": [{"message": REFUSED["rewind"]}], "data": {"rewindRun": None}}
        run = self.runs.get(v["runName"])
        if run is None:
            return 200, {"data": {"rewindRun": {"rewoundRun": None}}}
        step = float(v["metricValue"])
        run.rewinds.append(step)
        run.history = [h for h in run.history if h.get("_step", 0) <= step]
        run.summary = {**(run.history[-1] if run.history else {})}
        return 200, {"data": {"rewindRun": {"rewoundRun": run.bucket()}}}

    def _op_RunResumeStatus(self, v: dict) -> tuple[int, dict]:  # noqa: N802
        run = self.runs.get(v["name"])
        if run is None:
            return 200, {"data": {"model": {"id": "p1", "name": v.get("project"), "entity": {"id": "e1", "name":
                         v.get("entity")}, "bucket": None}}}
        tail = json.dumps([json.dumps(h) for h in run.history[-1:]])
        bucket = {**run.bucket(), "summaryMetrics": json.dumps(run.summary), "logLineCount": 0,
                  "eventsLineCount": 0, "historyTail": tail, "eventsTail": "[]", "tags": [], "notes": None,
                  "wandbConfig": json.dumps({"t": (run.config.get("_wandb") or {}).get("value", {}).get("t", {})})}
        return 200, {"data": {"model": {"id": "p1", "name": run.project, "entity": {"id": "e1", "name": run.entity},
                                        "bucket": bucket}}}

    def _op_RunStoppedStatus(self, v: dict) -> tuple[int, dict]:  # noqa: N802
        return 200, {"data": {"project": {"run": {"stopped": False}}}}

    def _op_CreateRunFiles(self, v: dict) -> tuple[int, dict]:  # noqa: N802
        files = [{"name": f, "uploadUrl": f"{self.url}/upload/{v['run']}/{f}"} for f in v["files"]]
        return 200, {"data": {"createRunFiles": {"runID": f"run-{v['run']}", "uploadHeaders": [], "files": files}}}

    def _op_Run(self, v: dict) -> tuple[int, dict]:  # noqa: N802 - wandb.Api().run(path)
        run = self.runs.get(v.get("name"))
        if run is None or (v.get("project"), v.get("entity")) != (run.project, run.entity):
            return 200, {"data": {"project": None}}  # a run is found only at its own entity/project
        node = {**run.bucket(), "__typename": "Run", "state": "finished", "summaryMetrics": json.dumps(run.summary),
                "systemMetrics": "{}", "historyKeys": None, "tags": [], "user": {"name": "ups-test",
                                                                                "username": "ups-test"}}
        return 200, {"data": {"project": {"run": node}}}

    def file_stream(self, run_name: str, body: dict) -> None:
        with self._lock:
            run = self.runs[run_name]
            for name, chunk in (body.get("files") or {}).items():
                if name not in ("wandb-history.jsonl", "wandb-summary.json"):
                    continue  # console output, system metrics: not modelled
                lines = [json.loads(line) for line in chunk.get("content") or []]
                if name == "wandb-history.jsonl":
                    offset = int(chunk.get("offset") or 0)
                    run.history[offset:offset + len(lines)] = lines
                elif name == "wandb-summary.json" and lines:
                    run.summary = lines[-1]
            if body.get("complete"):
                run.exit_code = int(body.get("exitcode") or 0)

    def _handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _body(self) -> bytes:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body

            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self._body()
                stream = _FILE_STREAM.match(self.path)
                if stream:
                    server._record(self.path, "file_stream")
                    if stream.group(3) not in server.runs:
                        return self._send(404, b'{"error":"run not found"}')
                    server.file_stream(stream.group(3), json.loads(body))
                    return self._send(200, b"{}")
                if self.path != "/graphql":
                    server._record(self.path, None)
                    return self._send(200, b"")
                try:
                    payload = json.loads(body)
                    # wandb-core sends `operationName` for some queries only: else the query's own name
                    op = payload.get("operationName") or _query_name(payload.get("query") or "")
                    variables = payload.get("variables") or {}
                except (ValueError, AttributeError):
                    server._record(self.path, "<not json>")
                    return self._send(400, b'{"errors":[{"message":"bad request"}]}')
                server._record(self.path, op)
                status, answer = server._answer(op, variables)
                self._send(status, json.dumps(answer).encode())

            def do_PUT(self):  # noqa: N802 - the run files' uploads (CreateRunFiles' URLs)
                body = self._body()
                server._record(self.path, "PUT")
                if not self.path.startswith("/upload/"):
                    return self._send(400, b"")
                server.uploads[self.path.removeprefix("/upload/")] = body
                self._send(200, b"")

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
