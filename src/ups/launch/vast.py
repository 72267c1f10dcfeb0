"""A thin wrapper over the official `vastai` SDK: the few calls the launcher makes.

Why it exists: the SDK raises `requests` exceptions that carry URLs and bodies, and the
CLI must print one clear line instead; the API key and server URL are resolved once
here (`VAST_URL` points the real client at another server, which is how the tests run
it against a local fake); and the create request is built in one place, so a dry run
prints exactly what a real launch sends, with the forwarded secrets redacted.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ups.errors import LaunchError
from ups.launch.ratelimit import backoff_waits, time_scale

API_KEY_ENV = "VAST_API_KEY"
SERVER_URL_ENV = "VAST_URL"
DEFAULT_SERVER_URL = "https://console.vast.ai"
DEFAULT_IMAGE = "pytorch/pytorch:2.4.1-cuda12.1-cudnn9-devel"  # has bash, git, python, pip
REDACTED = "<redacted>"
LABEL_TRAINING = "ups:training"  # set at create; the instance's own key cannot change labels
PUBLIC_ENV = {"PYTHONUNBUFFERED": "1"}  # set on every instance; not a secret


class VastApiError(LaunchError):
    """The Vast API could not be reached or refused a call (not a usage error).

    `transient`: unreachable, rate-limited or a server error, worth retrying later;
    a refusal (bad key, unknown offer) is not. `error` is Vast's own error code
    (`no_such_ask`, `invalid_args`, ...) when it sent one.
    """

    exit_code = 1

    def __init__(self, message: str, transient: bool = False, status: int = 0, error: str = "",
                 body: dict | None = None) -> None:
        super().__init__(message)
        self.transient, self.status, self.error, self.body = transient, status, error, body or {}


class OfferTaken(VastApiError):
    """The offer was rented by someone else meanwhile (404 / 410 `no_such_ask`)."""


def api_key_files() -> list[Path]:
    """Where the `vastai` CLI keeps the key (`vastai set api-key`), newest location first."""
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path(config_home) / "vastai" / "vast_api_key", Path.home() / ".vast_api_key"]


def resolve_api_key() -> str:
    """The Vast API key: `VAST_API_KEY`, else the vastai key file."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if key:
        return key
    for path in api_key_files():
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
    raise LaunchError(
        f"no Vast API key: set {API_KEY_ENV} or run `vastai set api-key KEY` "
        f"(it writes {api_key_files()[0]})"
    )


@dataclass(frozen=True)
class OfferFilter:
    """What a rented machine must have; becomes the SDK's offer query."""

    gpu_name: str | None = None  # e.g. RTX_4090 (underscores stand for spaces, as in vastai)
    num_gpus: int = 1
    max_price: float | None = None  # $/hour, on-demand price
    min_reliability: float = 0.98
    disk_gb: float = 50.0
    interruptible: bool = False
    # $/hour for the whole machine, all its GPUs together (vast-ai/docs create_instance.yaml:
    # `price`, "Bid price per machine (in $/hour)"; dstack api_client.py: "per-machine bid")
    bid: float | None = None

    def query(self) -> dict[str, Any]:
        q: dict[str, Any] = {
            "num_gpus": {"eq": self.num_gpus},
            "reliability": {"gte": self.min_reliability},
            "disk_space": {"gte": self.disk_gb},
        }
        if self.gpu_name:
            q["gpu_name"] = {"eq": self.gpu_name.replace("_", " ")}
        if self.max_price is not None:
            q["dph_total"] = {"lte": self.max_price}
        if self.interruptible and self.bid is not None:
            q["min_bid"] = {"lte": self.bid}
        return q

    @property
    def offer_type(self) -> str:
        return "bid" if self.interruptible else "on-demand"


@dataclass(frozen=True)
class CreateRequest:
    """One instance to create: image, disk, onstart field and forwarded secrets."""

    image: str
    disk_gb: float
    onstart: str
    secrets: dict[str, str] = field(default_factory=dict)
    label: str = LABEL_TRAINING
    bid_price: float | None = None

    def sdk_kwargs(self) -> dict[str, Any]:
        # ssh runtype: Vast runs `onstart` only under its own (ssh/jupyter) entrypoint.
        return {
            "image": self.image, "disk": self.disk_gb, "env": {**PUBLIC_ENV, **self.secrets},
            "label": self.label, "onstart_cmd": self.onstart, "bid_price": self.bid_price,
            "ssh": True,
        }

    def check(self) -> None:
        """Refuse here what Vast would refuse (vast-ai/docs create_instance.yaml x-input-validation)."""
        env = {**PUBLIC_ENV, **self.secrets}
        problems = [
            (len(self.image) > 1024, f"--image: at most 1024 characters ({len(self.image)} given)"),
            (len(self.label) > 256, f"label: at most 256 characters ({len(self.label)} given)"),
            (len(self.onstart) > 4096, f"onstart: at most 4096 characters ({len(self.onstart)} given)"),
            (self.disk_gb < 8, f"--disk-gb {self.disk_gb:g}: Vast requires at least 8"),
            (self.bid_price is not None and not 0.001 <= self.bid_price <= 128.0,
             f"--bid {self.bid_price}: Vast accepts 0.001 to 128 ($/hour per machine)"),
            (sum(len(v) for v in env.values()) > 32768, "--env: the values exceed 32768 characters in all"),
        ]
        problems += [(len(v) > 256, f"--env {k}: its value is {len(v)} characters; Vast accepts 256")
                     for k, v in env.items()]
        for bad, text in problems:
            if bad:
                raise LaunchError(text)

    def payload(self) -> dict[str, Any]:
        """The JSON body the SDK will send (built by the SDK's own pure builder)."""
        from vastai.api.instances import build_create_instance_payload

        return build_create_instance_payload(**self.sdk_kwargs())

    def redacted_payload(self) -> dict[str, Any]:
        body = self.payload()
        body["env"] = {k: REDACTED if k in self.secrets else v for k, v in body["env"].items()}
        body["onstart"] = f"<ups onstart loader, {len(self.onstart)} chars: the script above, gzip+base64>"
        return body


def _body(response: Any) -> tuple[dict, str]:
    """(JSON body or {}, Vast's message) of an answer; a 429 is often plain text."""
    try:
        body = response.json()
    except (ValueError, AttributeError):
        return {}, str(getattr(response, "text", "") or "").strip()[:200]
    if not isinstance(body, dict):
        return {}, str(body)[:200]
    return body, str(body.get("msg") or body.get("message") or body.get("detail") or body.get("error") or "")[:200]


def is_gone(e: VastApiError) -> bool:
    # dstack api_client.destroy_instance: `no_such_instance` means it is already gone;
    # vast-ai/docs destroy_instance.yaml answers 404 for an unknown instance.
    return e.error in ("no_such_instance", "not_found") or e.status == 404


class VastApi:
    """The launcher's Vast calls; every failure becomes a one-line `VastApiError`.

    Each call retries HTTP 429 with `ups.launch.ratelimit` waits (the SDK's own retry is
    off: it would answer a 2 s limit with 0.15 s waits).
    """

    def __init__(self, api_key: str | None = None, server_url: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] | None = None) -> None:
        try:
            from vastai import VastAI
        except ImportError as e:
            raise LaunchError("the `vastai` package is missing: pip install 'ups[launch]'") from e
        self.server_url = server_url or os.environ.get(SERVER_URL_ENV) or DEFAULT_SERVER_URL
        self._sdk = VastAI(api_key=api_key or resolve_api_key(), server_url=self.server_url, quiet=True, retry=1)
        self._sleep = sleep
        # progress, on stdout: stderr keeps the one line of an error
        self._log = log or (lambda line: print(line, flush=True))

    def _call(self, what: str, endpoint: str, fn: Callable[[], Any]) -> Any:
        """`fn()`, with 429 retried after the endpoint's backoff; errors as `VastApiError`."""
        waits = backoff_waits(endpoint)
        for attempt in range(len(waits) + 1):
            try:
                return self._once(what, fn)
            except VastApiError as e:
                if e.status != 429 or attempt == len(waits):
                    if e.status == 429:
                        raise VastApiError(f"{e} (still refused after {sum(waits):.0f}s of retries)",
                                           transient=True, status=429) from e
                    raise
                wait = waits[attempt] * time_scale()
                self._log(f"Vast API: {what} rate-limited ({e.body.get('msg') or 'HTTP 429'}); "
                          f"retrying in {wait:.3g}s")
                self._sleep(wait)
        raise AssertionError("unreachable")

    def _once(self, what: str, fn: Callable[[], Any]) -> Any:
        import requests

        try:
            return fn()
        except requests.HTTPError as e:
            code = e.response.status_code if e.response is not None else 0
            body, msg = _body(e.response)
            raise VastApiError(f"Vast API refused {what}: HTTP {code}" + (f": {msg}" if msg else ""),
                               transient=code == 429 or code >= 500, status=code,
                               error=str(body.get("error") or ""), body={**body, "msg": msg}) from e
        except (requests.ConnectionError, requests.Timeout, TimeoutError) as e:
            raise VastApiError(f"cannot reach the Vast API at {self.server_url} for {what}",
                               transient=True) from e
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            raise VastApiError(f"unexpected Vast API answer to {what}: {type(e).__name__}") from e

    def search_offers(self, offer_filter: OfferFilter, limit: int = 10) -> list[dict]:
        """Matching offers, cheapest first."""
        return self._call("search offers", "search", lambda: self._sdk.search_offers(
            query=offer_filter.query(), type=offer_filter.offer_type, order="dph_total",
            limit=limit, storage=offer_filter.disk_gb,
        ))

    def create_instance(self, offer_id: int, request: CreateRequest) -> int:
        """Rent `offer_id`; returns the new instance id.

        An error that names a `new_contract` made an instance anyway (an interruptible
        one whose bid is too low is created stopped: dstack api_client.py); it is
        destroyed before the error is raised, so nothing is left billing.
        """
        request.check()
        what = f"create instance from offer {offer_id}"
        try:
            answer = self._call(what, "create", lambda: self._sdk.create_instance(offer_id, **request.sdk_kwargs()))
        except VastApiError as e:
            if e.error == "no_such_ask" or "no_such_ask" in str(e.body.get("msg")) or e.status == 410:
                raise OfferTaken(str(e), status=e.status, error="no_such_ask", body=e.body) from e
            self._destroy_created(e.body.get("new_contract"), str(e))
            raise
        if not isinstance(answer, dict) or not answer.get("success", True) or "new_contract" not in answer:
            text = f"Vast API refused {what}: {json.dumps(answer)[:200]}"
            self._destroy_created(answer.get("new_contract") if isinstance(answer, dict) else None, text)
            raise VastApiError(text)
        return int(answer["new_contract"])

    def _destroy_created(self, new_id: Any, error: str) -> None:
        if new_id is None:
            return
        try:
            self.destroy(int(new_id))
        except VastApiError as e:
            raise VastApiError(f"{error}; it created instance {new_id} anyway and destroying it failed "
                               f"({e}): destroy it now (vast_launch.py destroy {new_id} --yes)") from e
        raise VastApiError(f"{error}; it created instance {new_id} anyway, which was destroyed")

    def show_instance(self, instance_id: int) -> dict | None:
        """The instance's row, or None: unknown, destroyed, or created a moment ago (not listed yet)."""
        try:
            return self._call(f"show instance {instance_id}", "show", lambda: self._sdk.show_instance(instance_id))
        except VastApiError as e:
            if e.status == 404:
                return None
            raise

    def show_instances(self) -> list[dict]:
        return self._call("show instances", "list", self._sdk.show_instances)

    def logs(self, instance_id: int, tail: int | None = None) -> str:
        text = self._call(f"logs of instance {instance_id}", "logs",
                          lambda: self._sdk.logs(instance_id, tail=str(tail) if tail else None))
        return text if isinstance(text, str) else json.dumps(text)

    def stop(self, instance_id: int) -> None:
        self._call(f"stop instance {instance_id}", "manage", lambda: self._sdk.stop_instance(instance_id))

    def destroy(self, instance_id: int, missing_ok: bool = True) -> bool:
        """Destroy; False when it was already gone (`no_such_instance`), which is not an error."""
        try:
            self._call(f"destroy instance {instance_id}", "destroy", lambda: self._sdk.destroy_instance(instance_id))
        except VastApiError as e:
            if missing_ok and is_gone(e):
                return False
            raise
        return True
