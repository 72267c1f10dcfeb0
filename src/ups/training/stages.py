"""The four stages, declared as data.

Each stage says what it is called, which config sections shape its result,
which stages it reads, which files it owns, and how to build its training task.
One runner (`runner.py`) and one loop (`loop.py`) drive them all; nothing here
repeats the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ups.config import Config
from ups.resume.layout import STAGE_CHECKPOINT, STAGE_NAMES, STAGE_OUTPUTS


@dataclass(frozen=True)
class StageDef:
    name: str
    index: int  # 1-based position in the pipeline
    title: str  # for "Skipping <title>"
    train_banner: str  # for "STAGE i/4: <train_banner>"
    sections: tuple[str, ...]  # top-level config sections that shape the result
    depends_on: tuple[str, ...]
    build: str  # name of the task builder in ups.training.tasks (imported lazily: torch)

    @property
    def outputs(self) -> tuple[str, ...]:
        return STAGE_OUTPUTS[self.name]

    @property
    def checkpoint(self) -> str:
        return STAGE_CHECKPOINT[self.name]

    def builder(self) -> Callable[..., Any]:
        from ups.training import tasks

        return getattr(tasks, self.build)


STAGES: tuple[StageDef, ...] = (
    StageDef("operator", 1, "Operator", "Training Operator", ("operator",), (), "build_operator_task"),
    StageDef(
        "diff_residual", 2, "Diffusion Residual", "Training Diffusion Residual",
        ("diffusion",), ("operator",), "build_diffusion_task",
    ),
    StageDef(
        "consistency_distill", 3, "Consistency Distillation", "Consistency Distillation",
        ("diffusion", "consistency"), ("operator", "diff_residual"), "build_consistency_task",
    ),
    StageDef(
        "steady_prior", 4, "Steady Prior", "Training Steady Prior",
        ("steady_prior", "diffusion"), (), "build_steady_prior_task",
    ),
)
assert tuple(s.name for s in STAGES) == STAGE_NAMES
BY_NAME = {s.name: s for s in STAGES}

def data_identity(cfg: Config) -> dict[str, Any]:
    """What the data *is*, independent of where it lives on this machine.

    Generated data is identified by its generator settings; files by name and
    size (hashing several GB at every start would cost more than it protects).
    Paths are left out so a run continued on a fresh machine, with the data in
    another directory, still matches.
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


def stage_config(cfg: Config, stage: StageDef) -> dict[str, Any]:
    """The config that shapes a stage's result, flattened to dotted keys.

    Runtime-only settings (device, checkpoint cadence, logging, where files
    live) are left out, so moving a run to another machine or changing how often
    it saves does not make finished stages stale.
    """
    d = cfg.as_dict()
    subset: dict[str, Any] = {
        "data": data_identity(cfg),
        "latent": d["latent"],
        "training": {"seed": cfg.training.seed},
        "stages": {stage.name: cfg.stage(stage.name).model_dump()},
    }
    for section in stage.sections:
        subset[section] = d[section]
    if subset.get("operator", {}).get("train_rollout_steps") == 1:
        del subset["operator"]["train_rollout_steps"]  # as above: the default of a later setting
    return flatten(subset)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
