"""A YAML config file as a plain mapping, and `--set section.key=value` overrides on it.

Schema-free (no pydantic): `ups.config` validates what these return. The launcher
reads a config's `training.checkpoint_dir` with `read_yaml` alone.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ups.errors import ConfigError, one_line


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML config file (not validated). Raises ConfigError."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; give the YAML file in it, e.g. --config {path}/x.yaml")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8 YAML") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {one_line(str(e), whole=True)}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of `raw` with each `dotted.key=yaml_value` set."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' must look like section.key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"override '{item}': value is not valid YAML") from e
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return out
