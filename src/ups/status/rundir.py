"""A checkpoint directory to look at, on this disk or behind any fsspec URI.

The dashboard reads a run where it is: a local directory, `file:///...`, or the
remote copy training keeps (`s3://`, `gs://`, ...). It opens the URI the way resume
does (`FsspecStore`: the one front door, which refuses credentials in a URI) and reads
through the same reader, so a remote store is read exactly like a local directory —
only the live-trainer check (a lock on this machine's disk) needs a local path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from ups.errors import CheckpointError
from ups.remote.fsspec_store import FsspecReader, FsspecStore


class RunDir:
    def __init__(self, uri: str | Path):
        self.uri = str(uri)
        self.store = FsspecStore(self.uri)
        self.reader = FsspecReader(self.store)

    @property
    def is_local(self) -> bool:
        return self.store.local

    @property
    def local_path(self) -> Optional[Path]:
        return Path(self.store.root) if self.is_local else None

    @property
    def display(self) -> str:
        """The URI as given, or the absolute path of a plain local path."""
        return str(Path(self.store.root).resolve()) if "://" not in self.uri else self.uri

    def require_dir(self) -> None:
        if not self.reader.is_dir():
            raise CheckpointError(f"checkpoint directory not found: {self.display}")

    def read_bytes(self, name: str) -> Optional[bytes]:
        """The file's bytes, or None when it does not exist."""
        return self.reader.read_bytes(name)

    def read_json(self, name: str) -> Any:
        data = self.read_bytes(name)
        return None if data is None else json.loads(data.decode("utf-8", errors="replace"))

    def files(self) -> dict[str, dict[str, Any]]:
        """Every file below the root: relative name -> {size, mtime (if known)}."""
        return self.reader.files()

    def sha256(self, name: str) -> str:
        return self.reader.digest(name)["sha256"]
