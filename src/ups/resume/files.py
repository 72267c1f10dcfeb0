"""Saving and loading `.pt` files: atomically on write, without running code on read.

`torch.load` with pickle can execute arbitrary code from a crafted file; every
load here is `weights_only=True`, and a refusal becomes a CheckpointError that
says why. Saves hash the written bytes while the fsync runs, so recording a digest
adds almost no time to a save.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ups.errors import CheckpointError, one_line
from ups.resume.atomic import atomic_path, digest_in_background

OUTPUT_FORMAT = "ups.stage_output/1"
STATE_FORMAT = "ups.train_state/1"


def save_torch(obj: Any, path: str | Path) -> dict[str, Any]:
    """Atomically write `obj` with torch.save; return its `{"sha256", "size"}`.

    The digest is computed from the written file in a second thread while the
    fsync waits for the disk, so hashing costs (almost) no time of its own. (Hashing
    the bytes as they are written, in a second thread, was measured slower: the two
    threads share the cores and memory bandwidth with the write; see bench/.)
    """
    with atomic_path(path) as tmp:
        torch.save(obj, str(tmp))  # to a path: torch's own C++ writer, no Python file object
        digest = digest_in_background(tmp)
    return digest.result()


def load_torch(path: str | Path, map_location: Any = "cpu") -> Any:
    """Load a file saved by `save_torch` with `weights_only=True`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain data "
            "(a file crafted to run code when unpickled, or one not written by ups); "
            "it was not executed"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: truncated or corrupt ({one_line(e)})") from e


def load_output(path: str | Path, stage: str | None = None, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a stage output file and check it is one (and, if given, of `stage`)."""
    obj = load_torch(path, map_location)
    if not isinstance(obj, dict) or obj.get("format") != OUTPUT_FORMAT:
        raise CheckpointError(f"{path} is not a ups stage output (expected format {OUTPUT_FORMAT})")
    if stage is not None and obj.get("stage") != stage:
        raise CheckpointError(f"{path} was written by stage {obj.get('stage')!r}, expected {stage!r}")
    return obj
