"""Load, validate and override the YAML config (its identity and hashes: `ups.identity`;
reading the file and applying `--set` overrides, schema-free: `ups.config_yaml`).

The config is validated once, on load, so that a typo or a negative epoch count
fails in the first second with one line naming the key — not an hour into a run.
Sections mirror the seed's configs (`data`, `latent`, `operator.pdet`, `diffusion`,
`training`, `stages`, `logging.wandb`) plus `checkpoint` and `eval`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, create_model, model_validator

from ups import stages
from ups.config_yaml import apply_overrides, read_yaml
from ups.errors import ConfigError

SPLITS = ("train", "val", "test")
DEFAULT_CHECKPOINT_DIR = "checkpoints"  # relative to the working directory
Split = Literal["train", "val", "test"]
PosInt = Field(gt=0)


class _Section(BaseModel):
    # allow_inf_nan=False: `.inf` / `.nan` are valid YAML floats, and a NaN learning rate
    # would train four stages of NaN weights without one error.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class GeneratorConfig(_Section):
    """The built-in Burgers data set: 1D periodic viscous Burgers, spectral solver."""

    nx: int = Field(64, ge=8)
    nt: int = Field(41, ge=2)
    t_end: float = Field(1.0, gt=0)
    viscosity: float = Field(0.01, gt=0)
    max_modes: int = Field(4, ge=1)
    n_train: int = Field(32, ge=1)
    n_val: int = Field(8, ge=1)
    n_test: int = Field(8, ge=1)
    seed: int = 1234
    # "pdebench": PDEBench's 1D Burgers (`ups.data.pdebench_protocol`): its initial
    # conditions, the viscosity as its file names give it (nu/pi in the equation), one
    # file `1D_Burgers_Sols_Nu<nu>.hdf5` holding test, then val, then train trajectories.
    protocol: Literal["builtin", "pdebench"] = "builtin"
    # Solver grid of the "pdebench" protocol (None: its convergence-checked default).
    internal_nx: Optional[int] = Field(None, ge=8)


class DataConfig(_Section):
    root: str = "data/pdebench"
    dataset: str = "burgers1d"
    # The split `scripts/evaluate.py` reads when `eval.split` is not set.
    split: Optional[Split] = None
    limit: Optional[int] = Field(None, gt=0)
    generate: bool = True
    generator: GeneratorConfig = GeneratorConfig()
    files: dict[Split, str] = {}
    index_range: dict[Split, tuple[int, int]] = {}
    time_stride: int = Field(1, ge=1)
    # Every `space_stride`-th grid point is read (PDEBench's `reduced_resolution`: 4).
    space_stride: int = Field(1, ge=1)
    preload: Union[bool, Literal["auto"]] = "auto"

    def split_path(self, split: str) -> Path:
        """Where a split lives: `data.files.<split>` if given, else `<root>/<dataset>_<split>.h5`
        (the one PDEBench-named file of every split under the "pdebench" protocol)."""
        if split in self.files:
            return Path(self.files[split])
        if self.generator.protocol == "pdebench":
            return Path(self.root) / pdebench_file_name(self.generator.viscosity)
        return Path(self.root) / f"{self.dataset}_{split}.h5"

    def default_range(self, split: str, n_rows: int) -> tuple[int, int]:
        """Rows of a split's file when `data.index_range` does not say: all of them, or under
        the "pdebench" protocol test first (PDEBench's FNODatasetSingle takes the first
        10 % as test), then val, then train to the end of the file."""
        if self.generator.protocol != "pdebench":
            return (0, n_rows)
        g = self.generator
        bounds = {"test": (0, g.n_test), "val": (g.n_test, g.n_test + g.n_val),
                  "train": (g.n_test + g.n_val, n_rows)}
        return bounds[split]


def pdebench_file_name(viscosity: float) -> str:
    """PDEBench's name for a Burgers file: `"1D_Burgers_Sols_Nu" + str(epsilon)[:5]` + `.hdf5`
    (pdebench/data_gen/data_gen_NLE/BurgersEq/burgers_multi_solution_Hydra.py)."""
    return f"1D_Burgers_Sols_Nu{str(float(viscosity))[:5]}.hdf5"


class LatentConfig(_Section):
    dim: int = Field(16, gt=0)
    tokens: int = Field(16, gt=0)
    normalize: bool = True


class PDETConfig(_Section):
    """The operator: a transformer over latent tokens, one level per entry of `depths`."""

    input_dim: Optional[int] = Field(None, gt=0)
    hidden_dim: int = Field(64, gt=0)
    depths: list[int] = [1, 1]
    num_heads: Union[int, list[int]] = 4
    mlp_ratio: float = Field(2.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_fit(self) -> "PDETConfig":
        if not self.depths or any(d < 1 for d in self.depths):
            raise ValueError("depths must be a non-empty list of positive ints")
        heads = self.heads_per_level()
        if len(heads) != len(self.depths):
            raise ValueError(
                f"num_heads has {len(heads)} entries but depths has {len(self.depths)}; "
                "give one int or one per level"
            )
        for h in heads:
            if h < 1 or self.hidden_dim % h:
                raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by num_heads {h}")
        return self

    def heads_per_level(self) -> list[int]:
        if isinstance(self.num_heads, int):
            return [self.num_heads] * len(self.depths)
        return list(self.num_heads)


class OperatorConfig(_Section):
    pdet: PDETConfig = PDETConfig()
    # Train through this many autoregressive steps (backpropagating through all of them),
    # the loss averaged over the steps; 1 is one-step teacher forcing.
    train_rollout_steps: int = Field(1, ge=1)


class DiffusionConfig(_Section):
    """Denoiser of the operator's residual `z1 - op(z0)` (EDM-style noise levels)."""

    latent_dim: Optional[int] = Field(None, gt=0)
    hidden_dim: int = Field(64, gt=0)
    depth: int = Field(2, gt=0)
    num_heads: int = Field(4, gt=0)
    sigma_min: float = Field(0.002, gt=0)
    sigma_max: float = Field(2.0, gt=0)
    sigma_data: float = Field(0.5, gt=0)
    sample_steps: int = Field(8, gt=0)
    # Learn the residual along the operator's own rollouts: from each true state the operator
    # rolls this many steps, and the residual at step k is the true state's minus the prediction
    # from the operator's (k-1)-step state. 1: one step from true states only.
    train_rollout_steps: int = Field(1, ge=1)
    # The residual as the operator's k-step error, told k: drawn for each step of the operator's
    # own deterministic rollout and added to it, never fed back. Evaluation rollouts may be at
    # most `train_rollout_steps` long. False: a one-step residual, added and rolled on from.
    lead_time: bool = False


class ConsistencyConfig(_Section):
    """The few-step student distilled from the diffusion teacher (same architecture)."""

    teacher_steps: int = Field(12, ge=2)
    student_steps: int = Field(2, ge=1)


class SteadyPriorConfig(_Section):
    """Denoising prior over long-time latents (the last `tail_fraction` of each trajectory)."""

    hidden_dim: int = Field(64, gt=0)
    depth: int = Field(2, gt=0)
    num_heads: int = Field(4, gt=0)
    tail_fraction: float = Field(0.25, gt=0, le=1)


class StageConfig(_Section):
    """Per-stage settings; unset ones fall back to `training.*`."""

    epochs: Optional[int] = Field(None, ge=0)
    lr: Optional[float] = Field(None, gt=0)
    batch_size: Optional[int] = Field(None, gt=0)
    weight_decay: Optional[float] = Field(None, ge=0)
    warmup_steps: Optional[int] = Field(None, ge=0)
    ema_decay: Optional[float] = Field(None, ge=0, lt=1)
    grad_clip: Optional[float] = Field(None, gt=0)


# One `stages.<name>` entry per declared stage (`ups.stages`).
StagesConfig = create_model("StagesConfig", __base__=_Section,
                            **{name: (StageConfig, StageConfig()) for name in stages.names()})


class TrainingConfig(_Section):
    batch_size: int = Field(32, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    ema_decay: float = Field(0.99, ge=0, lt=1)
    grad_clip: float = Field(1.0, gt=0)
    # Fallback for a stage whose `epochs` is not set; unset here means such a stage is off.
    epochs: Optional[int] = Field(None, ge=0)
    checkpoint_dir: str = DEFAULT_CHECKPOINT_DIR
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    num_threads: Optional[int] = Field(None, gt=0)


class AutoIntervalConfig(_Section):
    """`checkpoint.every_seconds: auto`: T = √(2·save cost·MTBF), within [min_seconds, max_seconds]."""

    min_seconds: float = Field(30.0, gt=0)
    max_seconds: float = Field(1800.0, gt=0)
    # The MTBF assumed until `min_failures` failures of this run were seen (rented GPUs: hours).
    prior_mtbf_seconds: float = Field(4 * 3600.0, gt=0)
    min_failures: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> "AutoIntervalConfig":
        if self.min_seconds > self.max_seconds:
            raise ValueError(f"min_seconds {self.min_seconds:g} exceeds max_seconds {self.max_seconds:g}")
        return self


class CheckpointConfig(_Section):
    """When the resumable training state is saved, how many are kept, where copies go."""

    every_steps: Optional[int] = Field(200, gt=0)
    # Seconds, or "auto": set from the measured save cost and this run's failures (checkpoint.auto).
    every_seconds: Optional[Union[PositiveFloat, Literal["auto"]]] = 300.0
    auto: AutoIntervalConfig = AutoIntervalConfig()
    keep: int = Field(2, ge=1)
    remote: Optional[str] = None
    upload_every_seconds: float = Field(300.0, ge=0)
    # After SIGTERM/SIGINT, the longest wait for the last upload before exiting. Keep it
    # inside the platform's grace period (docker stop: 10 s; GCP spot: 30 s): the state is
    # already on the local disk, and a cut upload leaves the remote at its previous snapshot.
    flush_on_signal_seconds: float = Field(25.0, ge=0)


class WandbConfig(_Section):
    enabled: bool = False
    project: str = "ups"
    entity: Optional[str] = None
    mode: Literal["online", "offline", "disabled"] = "online"
    # online, but W&B cannot be reached at start: "error" stops at once; "offline" trains and
    # logs locally, printing the `wandb sync` command that uploads it later.
    fallback: Literal["error", "offline"] = "error"
    run_name: Optional[str] = None
    group: Optional[str] = None
    tags: list[str] = []


class LoggingConfig(_Section):
    wandb: WandbConfig = WandbConfig()
    log_every_steps: int = Field(10, gt=0)
    progress: Literal["auto", "bar", "lines", "off"] = "auto"


class ProtocolConfig(_Section):
    """PDEBench's evaluation (`ups.eval.protocol`): frames every `data.time_stride` snapshots,
    on every `data.space_stride`-th point; `given` frames in, `predicted` rolled out."""

    given: int = Field(10, ge=1)
    predicted: Optional[int] = Field(31, ge=1)  # None: every frame after the given ones
    max_samples: int = Field(1000, ge=1)
    # Diffusion coefficient of the heat-equation baseline; None: the generator's, as it enters
    # the equation (nu/pi under the "pdebench" protocol).
    viscosity: Optional[float] = Field(None, gt=0)


class EvalConfig(_Section):
    split: Optional[Split] = None
    rollout_steps: Optional[int] = Field(None, gt=0)
    max_samples: Optional[int] = Field(None, gt=0)
    plot_samples: int = Field(3, ge=0)
    output_prefix: str = "reports/eval"
    # Sampled rollouts per sample for the diffusion residual and its student; 0 skips the
    # evaluation of the sampling stages (a spread needs at least 2).
    ensemble_size: int = Field(8, ge=0)
    ensemble_max_samples: Optional[int] = Field(None, gt=0)  # default: every evaluated sample
    seed: int = 0  # of every draw evaluation makes: the report is the same on every run
    # Inflate each sampling stage's ensemble spread about its mean by the factor that gives
    # spread/skill 1 on the validation split, before scoring the evaluation split.
    calibrate_spread: bool = False
    protocol: Optional[ProtocolConfig] = None


class Config(_Section):
    data: DataConfig = DataConfig()
    latent: LatentConfig = LatentConfig()
    operator: OperatorConfig = OperatorConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    consistency: ConsistencyConfig = ConsistencyConfig()
    steady_prior: SteadyPriorConfig = SteadyPriorConfig()
    training: TrainingConfig = TrainingConfig()
    stages: StagesConfig = StagesConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    logging: LoggingConfig = LoggingConfig()
    eval: EvalConfig = EvalConfig()

    @model_validator(mode="after")
    def _dims_agree(self) -> "Config":
        dim = self.latent.dim
        for key, value in (
            ("operator.pdet.input_dim", self.operator.pdet.input_dim),
            ("diffusion.latent_dim", self.diffusion.latent_dim),
        ):
            if value is not None and value != dim:
                raise ValueError(f"{key}={value} must equal latent.dim={dim}")
        if self.diffusion.hidden_dim % self.diffusion.num_heads:
            raise ValueError("diffusion.hidden_dim must be divisible by diffusion.num_heads")
        if self.steady_prior.hidden_dim % self.steady_prior.num_heads:
            raise ValueError("steady_prior.hidden_dim must be divisible by steady_prior.num_heads")
        if self.consistency.student_steps > self.consistency.teacher_steps:
            raise ValueError("consistency.student_steps must not exceed consistency.teacher_steps")
        return self

    # --- resolved views -------------------------------------------------

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.training.checkpoint_dir)

    def stage(self, name: str) -> "ResolvedStage":
        """A stage's settings with `training.*` fallbacks filled in."""
        s: StageConfig = getattr(self.stages, name)
        t = self.training
        pick = lambda own, default: default if own is None else own  # noqa: E731
        return ResolvedStage(
            epochs=pick(s.epochs, pick(t.epochs, 0)),
            lr=pick(s.lr, t.learning_rate),
            batch_size=pick(s.batch_size, t.batch_size),
            weight_decay=pick(s.weight_decay, t.weight_decay),
            warmup_steps=pick(s.warmup_steps, t.warmup_steps),
            ema_decay=pick(s.ema_decay, t.ema_decay),
            grad_clip=pick(s.grad_clip, t.grad_clip),
        )

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class ResolvedStage(BaseModel):
    model_config = ConfigDict(frozen=True)

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    warmup_steps: int
    ema_decay: float
    grad_clip: float


# --- loading ------------------------------------------------------------


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply `a.b.c=value` overrides, validate. Raises ConfigError."""
    raw = apply_overrides(read_yaml(path), overrides)
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {describe_validation_error(e)}") from e


def describe_validation_error(e: ValidationError) -> str:
    """The first problem as `key: what is wrong` — one line a user can act on."""
    err = e.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}' (check its spelling and section)"
    given = err.get("input")
    shown = "" if isinstance(given, (dict, list)) or given is None else f" (got {given!r})"
    more = f" (+{len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    return f"invalid value for '{key}': {err['msg']}{shown}{more}"
