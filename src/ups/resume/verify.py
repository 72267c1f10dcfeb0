"""Check files against the digests recorded when they were written.

A completed stage is skipped only if every output still has the size and
sha256 recorded at completion; anything else is rerun, with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

from ups.resume.atomic import file_digest


class OutputCatalog:
    """Digests of stage outputs on disk, each file hashed at most once until forgotten."""

    def __init__(self, checkpoint_dir: Path):
        self.dir = Path(checkpoint_dir)
        self._digests: dict[str, Optional[dict[str, Any]]] = {}

    def digest(self, name: str) -> Optional[dict[str, Any]]:
        if name not in self._digests:
            path = self.dir / name
            self._digests[name] = file_digest(path) if path.is_file() else None
        return self._digests[name]

    def shas(self, names: Iterable[str]) -> Optional[dict[str, str]]:
        """`{file: sha256}` of the named files, or None when one is missing."""
        out = {}
        for name in names:
            d = self.digest(name)
            if d is None:
                return None
            out[name] = d["sha256"]
        return out

    def problems(self, recorded: dict[str, dict[str, Any]]) -> list[str]:
        found = []
        for name, rec in recorded.items():
            have = self.digest(name)
            if have is None:
                found.append(f"{name} is missing")
            elif rec.get("size") is not None and have["size"] < rec["size"]:
                found.append(f"{name} is truncated ({have['size']} of {rec['size']} bytes)")
            elif rec.get("size") is not None and have["size"] != rec["size"]:
                found.append(f"{name} changed size ({have['size']} bytes, recorded {rec['size']})")
            elif rec.get("sha256") and have["sha256"] != rec["sha256"]:
                found.append(f"{name} was altered (sha256 differs from the one recorded)")
        return found

    def forget(self, names: Iterable[str]) -> None:
        for name in names:
            self._digests.pop(name, None)
