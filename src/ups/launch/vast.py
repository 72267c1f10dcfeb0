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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ups.errors import LaunchError
from ups.launch.self_stop import LABEL_TRAINING

API_KEY_ENV = "VAST_API_KEY"
SERVER_URL_ENV = "VAST_URL"
DEFAULT_SERVER_URL = "https://console.vast.ai"
DEFAULT_IMAGE = "pytorch/pytorch:2.4.1-cuda12.1-cudnn9-devel"  # has bash, git, python, pip
REDACTED = "<redacted>"
PUBLIC_ENV = {"PYTHONUNBUFFERED": "1"}  # set on every instance; not a secret


class VastApiError(LaunchError):
    """The Vast API could not be reached or refused a call (not a usage error).

    `transient`: unreachable, rate-limited or a server error, worth retrying later;
    a refusal (bad key, unknown offer) is not.
    """

    exit_code = 1

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


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
    bid: float | None = None  # $/hour per GPU, for interruptible offers

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

    def payload(self) -> dict[str, Any]:
        """The JSON body the SDK will send (built by the SDK's own pure builder)."""
        from vastai.api.instances import build_create_instance_payload

        return build_create_instance_payload(**self.sdk_kwargs())

    def redacted_payload(self) -> dict[str, Any]:
        body = self.payload()
        body["env"] = {k: REDACTED if k in self.secrets else v for k, v in body["env"].items()}
        body["onstart"] = f"<ups onstart loader, {len(self.onstart)} chars: the script above, gzip+base64>"
        return body


def _detail(response: Any) -> str:
    try:
        body = response.json()
        text = body.get("msg") or body.get("error") or ""
    except (ValueError, AttributeError):
        text = getattr(response, "text", "") or ""
    return f": {str(text)[:200]}" if text else ""


class VastApi:
    """The launcher's Vast calls; every failure becomes a one-line `VastApiError`."""

    def __init__(self, api_key: str | None = None, server_url: str | None = None) -> None:
        try:
            from vastai import VastAI
        except ImportError as e:
            raise LaunchError("the `vastai` package is missing: pip install 'ups[launch]'") from e
        self.server_url = server_url or os.environ.get(SERVER_URL_ENV) or DEFAULT_SERVER_URL
        self._sdk = VastAI(api_key=api_key or resolve_api_key(), server_url=self.server_url, quiet=True)

    @contextmanager
    def _call(self, what: str) -> Iterator[None]:
        import requests

        try:
            yield
        except requests.HTTPError as e:
            code = e.response.status_code if e.response is not None else 0
            raise VastApiError(f"Vast API refused {what}: HTTP {code}{_detail(e.response)}",
                               transient=code == 429 or code >= 500) from e
        except (requests.ConnectionError, requests.Timeout, TimeoutError) as e:
            raise VastApiError(f"cannot reach the Vast API at {self.server_url} for {what}",
                               transient=True) from e
        except (requests.RequestException, ValueError, KeyError, TypeError) as e:
            raise VastApiError(f"unexpected Vast API answer to {what}: {type(e).__name__}") from e

    def search_offers(self, offer_filter: OfferFilter, limit: int = 10) -> list[dict]:
        """Matching offers, cheapest first."""
        with self._call("search offers"):
            return self._sdk.search_offers(
                query=offer_filter.query(), type=offer_filter.offer_type, order="dph_total",
                limit=limit, storage=offer_filter.disk_gb,
            )

    def create_instance(self, offer_id: int, request: CreateRequest) -> int:
        """Rent `offer_id`; returns the new instance id."""
        with self._call(f"create instance from offer {offer_id}"):
            answer = self._sdk.create_instance(offer_id, **request.sdk_kwargs())
            if not answer.get("success", True) or "new_contract" not in answer:
                raise VastApiError(f"Vast API refused offer {offer_id}: {json.dumps(answer)[:200]}")
            return int(answer["new_contract"])

    def show_instance(self, instance_id: int) -> dict | None:
        """The instance's row, or None when it no longer exists (destroyed)."""
        import requests

        try:
            with self._call(f"show instance {instance_id}"):
                return self._sdk.show_instance(instance_id)
        except VastApiError as e:
            cause = e.__cause__
            if isinstance(cause, requests.HTTPError) and cause.response is not None \
                    and cause.response.status_code == 404:
                return None
            raise

    def show_instances(self) -> list[dict]:
        with self._call("show instances"):
            return self._sdk.show_instances()

    def logs(self, instance_id: int, tail: int | None = None) -> str:
        with self._call(f"logs of instance {instance_id}"):
            text = self._sdk.logs(instance_id, tail=str(tail) if tail else None)
        return text if isinstance(text, str) else json.dumps(text)

    def stop(self, instance_id: int) -> None:
        with self._call(f"stop instance {instance_id}"):
            self._sdk.stop_instance(instance_id)

    def destroy(self, instance_id: int, missing_ok: bool = False) -> None:
        if missing_ok and self.show_instance(instance_id) is None:
            return
        with self._call(f"destroy instance {instance_id}"):
            self._sdk.destroy_instance(instance_id)

    def set_label(self, instance_id: int, label: str) -> None:
        with self._call(f"label instance {instance_id}"):
            self._sdk.label_instance(instance_id, label)
