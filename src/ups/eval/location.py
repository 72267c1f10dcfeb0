"""A checkpoint directory to look at, on this disk or behind any fsspec URI.

The dashboard reads a run where it is: a local directory, `file:///...`, or the
remote copy training keeps (`s3://`, `gs://`, ...). Everything goes through one
fsspec filesystem, so a remote store is read exactly like a local directory —
only the live-trainer check (a lock on this machine's disk) needs a local path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ups.errors import CheckpointError, RemoteUnavailableError
from ups.resume.atomic import stream_digest


class Location:
    def __init__(self, uri: str | Path):
        self.uri = str(uri)
        from ups.remote.fsspec_store import parse_uri  # the one front door: it refuses credentials in a URI

        self.fs, root = parse_uri(self.uri)
        self.root = root.rstrip("/") or "/"

    @property
    def is_local(self) -> bool:
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        return "file" in protocols

    @property
    def local_path(self) -> Optional[Path]:
        return Path(self.root) if self.is_local else None

    @property
    def display(self) -> str:
        """The URI as given, or the absolute path of a plain local path."""
        return str(Path(self.root).resolve()) if "://" not in self.uri else self.uri

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _unreachable(self, e: BaseException) -> RemoteUnavailableError:
        # botocore's NoCredentialsError / EndpointConnectionError are not OSErrors: catch them all
        from ups.remote.object_store import describe

        return RemoteUnavailableError(f"cannot read {self.uri}: {describe(e)}")

    def require_dir(self) -> None:
        try:
            ok = self.fs.isdir(self.root)
        except Exception as e:  # noqa: BLE001 - one line for every way a remote refuses
            raise self._unreachable(e) from e
        if not ok:
            raise CheckpointError(f"checkpoint directory not found: {self.display}")

    def read_bytes(self, name: str) -> Optional[bytes]:
        """The file's bytes, or None when it does not exist."""
        try:
            with self.fs.open(self._path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001
            raise self._unreachable(e) from e

    def read_json(self, name: str) -> Any:
        data = self.read_bytes(name)
        return None if data is None else json.loads(data.decode("utf-8", errors="replace"))

    def files(self) -> dict[str, dict[str, Any]]:
        """Every file below the root: relative name -> {size, mtime (if known)}."""
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as e:  # noqa: BLE001
            raise self._unreachable(e) from e
        out = {}
        for path, info in sorted(found.items()):
            if info.get("type", "file") != "file":
                continue
            rel = path[len(self.root):].lstrip("/") if path.startswith(self.root) else path
            out[rel] = {"size": info.get("size"), "mtime": _mtime(info)}
        return out

    def sha256(self, name: str) -> str:
        try:
            with self.fs.open(self._path(name), "rb") as f:
                return stream_digest(f)["sha256"]
        except FileNotFoundError:
            raise
        except Exception as e:  # noqa: BLE001
            raise self._unreachable(e) from e


def _mtime(info: dict[str, Any]) -> Optional[float]:
    value = info.get("mtime") or info.get("LastModified") or info.get("updated")
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else None
