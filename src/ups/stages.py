"""The stages of the pipeline, declared as data: every per-stage fact has its home here.

A stage's name, position, the config sections that shape its result, the stages
it reads, the files it writes (and which weights each holds), the file its
status names, the model it trains, the data it reads and the function that
builds its training task. Everything else — file-name constants, the plan, the
banners and their "i/N", the dashboard, the CLI's `--stage` choices — derives
from `STAGES`, so adding a stage is one `StageSpec` plus its task builder.

Torch-free (the task builder is a "module:function" reference imported when the
stage trains), so readers of a checkpoint directory can use it cheaply.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

# What a stage reads (see `PipelineContext.source`): (z_t, z_t+1) pairs; sequences of
# `operator.train_rollout_steps` steps, or of `diffusion.train_rollout_steps` steps for the
# residual (pairs when that is 1); single long-time states.
PAIRS, SEQUENCES, RESIDUAL_SEQUENCES, STATES = "pairs", "sequences", "residual_sequences", "states"
# Which weights an output file holds.
MODEL, EMA = "model", "ema"


@dataclass(frozen=True)
class Output:
    file: str
    role: str  # MODEL or EMA


@dataclass(frozen=True)
class StageSpec:
    name: str
    title: str  # for "Skipping <title>"
    train_banner: str  # for "STAGE i/N: <train_banner>"
    sections: tuple[str, ...]  # top-level config sections that shape the result
    upstream: tuple[str, ...]  # stages whose outputs it reads
    outputs: tuple[Output, ...]  # files it owns; no stage writes another stage's file
    checkpoint: str  # the output its status entry names (the one downstream stages read)
    model: str  # the entry of `ups.models.build.architecture(cfg)` describing what it trains
    data: str  # PAIRS, SEQUENCES, RESIDUAL_SEQUENCES or STATES
    build: str  # "module:function" building its task: f(ctx, train_source, val_source) -> StageTask

    @property
    def index(self) -> int:
        """1-based position in the pipeline."""
        return names().index(self.name) + 1

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(o.file for o in self.outputs)

    def builder(self) -> Callable[..., Any]:
        module, _, func = self.build.partition(":")
        return getattr(importlib.import_module(module), func)


def _pair(stem: str) -> tuple[Output, ...]:
    return Output(f"{stem}.pt", MODEL), Output(f"{stem}_ema.pt", EMA)


_TASKS = "ups.training.tasks"
STAGES: list[StageSpec] = [
    StageSpec("operator", "Operator", "Training Operator", ("operator",), (), _pair("operator"),
              "operator_ema.pt", "operator", SEQUENCES, f"{_TASKS}:build_operator_task"),
    StageSpec("diff_residual", "Diffusion Residual", "Training Diffusion Residual", ("diffusion",), ("operator",),
              _pair("diffusion_residual"), "diffusion_residual_ema.pt", "diffusion", RESIDUAL_SEQUENCES,
              f"{_TASKS}:build_diffusion_task"),
    StageSpec("consistency_distill", "Consistency Distillation", "Consistency Distillation",
              ("diffusion", "consistency"), ("operator", "diff_residual"), _pair("consistency_student"),
              "consistency_student_ema.pt", "student", RESIDUAL_SEQUENCES, f"{_TASKS}:build_consistency_task"),
    StageSpec("steady_prior", "Steady Prior", "Training Steady Prior", ("steady_prior", "diffusion"), (),
              (Output("steady_prior.pt", EMA),), "steady_prior.pt", "steady_prior", STATES,
              f"{_TASKS}:build_steady_prior_task"),
]


def register(spec: StageSpec) -> None:
    """Append a stage. Call it before anything else of `ups` is imported: the config schema,
    the file-name constants and the CLI's choices are built from `STAGES` at import."""
    if spec.name in names():
        raise ValueError(f"stage {spec.name!r} is already declared")
    unknown = [u for u in spec.upstream if u not in names()]
    if unknown:
        raise ValueError(f"stage {spec.name!r} reads {unknown}, which are not declared before it")
    if spec.checkpoint not in spec.files:
        raise ValueError(f"stage {spec.name!r}: checkpoint {spec.checkpoint!r} is not one of its outputs")
    STAGES.append(spec)


def names() -> tuple[str, ...]:
    return tuple(s.name for s in STAGES)


def get(name: str) -> StageSpec:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; the stages are {', '.join(names())}")


def count() -> int:
    return len(STAGES)
