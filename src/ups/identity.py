"""The canonical identity of a config: what affects results, and the two hashes derived from it.

`results_config` is the one definition of "what affects results": the whole
config less the runtime-only settings (where checkpoints go, the device, thread
counts, compilation, checkpoint cadence, logging, evaluation). From it:

- `config_hash`, the pipeline's hash in `metadata.json`: all of it, data paths
  included (a record of what this directory was trained from);
- `stage_identity`, what a stage's fingerprint hashes: the part of it that shapes
  that stage (its sections, its resolved `stages.<name>` settings, the latent,
  the seed), with the data's *location* replaced by what the data *is*, so a run
  continued on a fresh machine with the data elsewhere still matches.

Both are pinned for the shipped configs by `tests/unit/test_stage_identity.py`
(after DVC's golden stage hashes, `dvc/stage/`): a new default field that would
make finished stages stale fails there, naming the stage.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ups.config import Config
    from ups.stages import StageSpec

RUNTIME_SECTIONS = ("checkpoint", "logging", "eval")
RUNTIME_TRAINING_KEYS = ("checkpoint_dir", "device", "compile", "num_threads")
# Settings added after runs were made, left out of both hashes at these defaults so that
# those runs stay current. (`operator.train_rollout_steps` is in `config_hash` at every
# value; only the stage identity leaves it out at 1.)
LATER_DEFAULTS = {("diffusion", "train_rollout_steps"): 1, ("diffusion", "lead_time"): False}


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest_of(obj: Any) -> str:
    """sha256 of an object's canonical JSON: the identity of a config subset."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def results_config(cfg: "Config") -> dict[str, Any]:
    """The config less its runtime-only settings: everything that affects results."""
    d = cfg.as_dict()
    for key in RUNTIME_TRAINING_KEYS:
        d["training"].pop(key, None)
    for section in RUNTIME_SECTIONS:
        d.pop(section, None)
    for (section, key), default in LATER_DEFAULTS.items():
        if d[section].get(key) == default:
            del d[section][key]
    return d


def config_hash(cfg: "Config") -> str:
    """Hash of everything that affects results (runtime-only keys excluded)."""
    return digest_of(results_config(cfg))[:16]


def stage_identity(cfg: "Config", stage: "StageSpec") -> dict[str, Any]:
    """The config that shapes a stage's result, flattened to dotted keys."""
    d = results_config(cfg)
    subset: dict[str, Any] = {
        "data": data_identity(cfg),
        "latent": d["latent"],
        "training": {"seed": d["training"]["seed"]},
        "stages": {stage.name: cfg.stage(stage.name).model_dump()},
    }
    for section in stage.sections:
        subset[section] = d[section]
    if subset.get("operator", {}).get("train_rollout_steps") == 1:
        del subset["operator"]["train_rollout_steps"]  # a later setting, left out at its default
    return flatten(subset)


def data_identity(cfg: "Config") -> dict[str, Any]:
    """What the data *is*, independent of where it lives on this machine.

    Generated data is identified by its generator settings; files by name and
    size (hashing several GB at every start would cost more than it protects).
    """
    d = cfg.data
    ident: dict[str, Any] = {"dataset": d.dataset, "limit": d.limit, "time_stride": d.time_stride,
                             "index_range": {k: list(v) for k, v in sorted(d.index_range.items())}}
    if d.space_stride != 1:
        ident["space_stride"] = d.space_stride
    if d.generate:
        # Settings added later are left out at their defaults: earlier runs stay current.
        ident["generator"] = d.generator.model_dump(
            exclude={"protocol", "internal_nx"} if d.generator.protocol == "builtin" else set())
    else:
        ident["files"] = {
            split: {"name": d.split_path(split).name, "size": _size(d.split_path(split))}
            for split in ("train", "val")
        }
    return ident


def _size(path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
