"""`metadata.json`: pipeline-level facts (seed keys `trained`, `trained_at`,
`last_small_eval`, `last_full_eval`, `training_wandb`, plus the config hash and
architecture). Read-modify-write, atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ups.errors import StatusFileError
from ups.resume.atomic import atomic_write_json
from ups.resume.layout import METADATA_FILE


def read_metadata(checkpoint_dir: str | Path) -> dict[str, Any]:
    path = Path(checkpoint_dir) / METADATA_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StatusFileError(
            f"{path} is corrupt ({e}); delete it or restore it — it holds only pipeline facts "
            "(evaluation results, the W&B run), not training progress"
        ) from e
    if not isinstance(data, dict):
        raise StatusFileError(f"{path} must hold a JSON object")
    return data


def update_metadata(checkpoint_dir: str | Path, **fields: Any) -> dict[str, Any]:
    data = read_metadata(checkpoint_dir)
    data.update(fields)
    atomic_write_json(Path(checkpoint_dir) / METADATA_FILE, data)
    return data
