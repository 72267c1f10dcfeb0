"""Load the checkpoints an evaluation needs, refusing any that do not fit the config.

Evaluation must never quietly score the wrong model: a file that is not a ups
stage output, an operator trained with other shapes than the config describes,
or a diffusion model trained on other latents is a `CheckpointError` (exit 2)
naming the file and the mismatch. Weights load with `weights_only=True`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from ups.config import Config
from ups.errors import CheckpointError, ConfigError, one_line
from ups.models.build import build_diffusion, build_operator, build_steady_prior, build_student
from ups.models.denoiser import Condition, LeadCondition
from ups.models.diffusion import sample_mean
from ups.models.latent import LatentCodec
from ups.resume.atomic import file_digest
from ups.resume.files import load_output
from ups import stages
from ups.resume.layout import STAGE_CHECKPOINT
from ups.pipeline.context import check_architecture

# Stages whose file can serve as the correction model, and how to build each.
CORRECTION_BUILDERS: dict[str, Callable[[Config], nn.Module]] = {
    "diff_residual": build_diffusion,
    "consistency_distill": build_student,
}

# (the operator's prediction, its 0-based rollout step) -> the expected residual in latent units
Correction = Callable[[Tensor, int], Tensor]


@dataclass
class Models:
    """What evaluation runs: the codec, the operator, and optionally the latent correction."""

    codec: LatentCodec
    operator: nn.Module
    correction: Optional[Correction] = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> facts for the report
    # The residual is the operator's k-step error (`diffusion.lead_time`): added to the operator's
    # own rollout at each step, never rolled on from; it was trained for `lead_steps` steps.
    lead_steps: int = 0


def describe_file(path: Path, obj: dict[str, Any]) -> dict[str, Any]:
    """Facts about a loaded checkpoint worth printing in a report (what exactly was scored)."""
    return {"path": str(path), "stage": obj.get("stage"), "role": obj.get("role"), "step": obj.get("step"),
            "fingerprint": obj.get("fingerprint"), "sha256": file_digest(path)["sha256"]}


def _load(path: Path, stages: tuple[str, ...], cfg: Config) -> dict[str, Any]:
    obj = load_output(path)
    stage = obj.get("stage")
    if stage not in stages:
        raise CheckpointError(f"{path} holds the weights of stage {stage!r}; expected one of {', '.join(stages)}")
    check_architecture(obj, cfg, stage, path)
    if not isinstance(obj.get("latent"), dict):
        raise CheckpointError(f"{path} does not describe its latent codec ('latent' entry missing)")
    bad = [k for k, t in (obj.get("state_dict") or {}).items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:  # scores of NaN weights would be NaN: say so instead of reporting them
        raise CheckpointError(f"{path} holds NaN/Inf weights ({bad[0]}{' and more' if len(bad) > 1 else ''}): "
                              f"its stage diverged; retrain stage {stage!r} with a lower learning rate")
    return obj


def _codec(obj: dict[str, Any], path: Path) -> LatentCodec:
    try:
        return LatentCodec.from_description(obj["latent"])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot rebuild its latent codec ({e})") from e


def _module(build: Callable[[Config], nn.Module], obj: dict[str, Any], cfg: Config, path: Path,
            device: torch.device) -> nn.Module:
    model = build(cfg)
    try:
        model.load_state_dict(obj["state_dict"])
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"Architecture mismatch for {path.name}: its weights do not fit ({one_line(e)})") from e
    return model.to(device).eval().requires_grad_(False)


def load_models(cfg: Config, operator_path: Path, diffusion_path: Optional[Path], device: torch.device) -> Models:
    """Operator (and correction) from their files, checked against `cfg` and each other."""
    operator_path = Path(operator_path)
    op_obj = _load(operator_path, ("operator",), cfg)
    models = Models(codec=_codec(op_obj, operator_path).to(device),
                    operator=_module(build_operator, op_obj, cfg, operator_path, device),
                    files={"operator": describe_file(operator_path, op_obj)})
    if diffusion_path is not None:
        diffusion_path = Path(diffusion_path)
        d_obj = _load(diffusion_path, tuple(CORRECTION_BUILDERS), cfg)
        if d_obj["latent"] != op_obj["latent"]:
            raise CheckpointError(
                f"{diffusion_path.name} was trained on other latents than {operator_path.name} "
                f"(codec {d_obj['latent']} vs {op_obj['latent']}); pass files from the same run"
            )
        model = _module(CORRECTION_BUILDERS[d_obj["stage"]], d_obj, cfg, diffusion_path, device)
        scale = _residual_scale(d_obj, diffusion_path, model.lead_steps, device)
        models.correction = latent_correction(model, scale, cfg)
        models.files["diffusion"] = describe_file(diffusion_path, d_obj)
        models.lead_steps = model.lead_steps
    return models


def _residual_scale(obj: dict[str, Any], path: Path, lead_steps: int, device: torch.device) -> float | Tensor:
    """The factor the residuals were trained at: one number, or one per step for a lead-time residual."""
    try:
        raw = (obj.get("extra") or {})["residual_scale"]
        scale = torch.tensor(raw, dtype=torch.float32, device=device) if lead_steps else float(raw)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} has no usable extra.residual_scale; retrain its stage") from e
    if lead_steps and tuple(scale.shape) != (lead_steps,):
        raise CheckpointError(f"{path}: extra.residual_scale holds {list(scale.shape)} factors for a residual "
                              f"of {lead_steps} rollout steps")
    if not bool(torch.as_tensor(scale).gt(0).all()):
        raise CheckpointError(f"{path}: extra.residual_scale={raw} must be positive")
    return scale


def residual_condition(z_pred: Tensor, scale: float | Tensor, step: int) -> tuple[Condition, float | Tensor]:
    """The denoiser's condition for a residual of rollout step `step` (0-based), and the factor to undo."""
    if not isinstance(scale, Tensor):
        return z_pred, scale
    if step >= scale.shape[0]:  # evaluation checks the rollout's length first (`check_lead_steps`)
        raise ConfigError(f"the residual was trained for {scale.shape[0]} rollout steps, not {step + 1}")
    return LeadCondition(z_pred, torch.full((z_pred.shape[0],), step, device=z_pred.device)), scale[step]


def check_lead_steps(lead_steps: int, rollout_steps: int) -> None:
    """A lead-time residual knows only the steps it was trained for: refuse a longer rollout."""
    if lead_steps and rollout_steps > lead_steps:
        raise ConfigError(
            f"the residual is the operator's error at each of {lead_steps} rollout steps "
            f"(diffusion.train_rollout_steps with diffusion.lead_time), but the evaluation rolls out "
            f"{rollout_steps}: set eval.rollout_steps <= {lead_steps} or retrain diff_residual with "
            f"diffusion.train_rollout_steps >= {rollout_steps}")


def latent_correction(model: nn.Module, scale: float | Tensor, cfg: Config) -> Correction:
    """(z_pred, step) -> the expected residual E[z1 - op(z0) | op(z0)], back in latent units.

    The denoiser was trained on residuals multiplied by `scale` (see
    `ups.training.tasks.residual_scale`), so its estimate is divided by it here.
    `sample_mean` is deterministic: the report is the same on every run.
    """

    def correct(z_pred: Tensor, step: int) -> Tensor:
        cond, factor = residual_condition(z_pred, scale, step)
        return sample_mean(model, cond, z_pred.shape, cfg.diffusion) / factor

    return correct


# The stages that sample, and how to build each one's denoiser.
SAMPLER_BUILDERS: dict[str, Callable[[Config], nn.Module]] = {
    "diff_residual": build_diffusion,
    "consistency_distill": build_student,
    "steady_prior": build_steady_prior,
}


@dataclass
class Sampler:
    """A later stage's denoiser, frozen, with the scale its residuals were trained at.

    A lead-time residual has one factor per rollout step (`scale` [K]). The prior's
    states were trained standardised per feature: `shift` is their mean and `scale` a
    [tokens, dim] tensor; a latent is `x / scale + shift` for a model sample x.
    """

    stage: str
    model: nn.Module
    scale: float | Tensor
    file: dict[str, Any]
    shift: float | Tensor = 0.0

    def to_latent(self, x: Tensor) -> Tensor:
        return x / self.scale + self.shift


def later_stage_files(operator_path: Path) -> dict[str, Path]:
    """The sampling stages' files that sit beside the operator file (one run's checkpoint_dir)."""
    directory = Path(operator_path).parent
    found = {stage: directory / STAGE_CHECKPOINT[stage] for stage in SAMPLER_BUILDERS}
    return {stage: path for stage, path in found.items() if path.is_file()}


def load_sampler(cfg: Config, path: Path, stage: str, codec: LatentCodec, device: torch.device) -> Sampler:
    """A sampling stage's file, refused unless it is that stage's, fits the config and shares the codec."""
    path = Path(path)
    obj = _load(path, (stage,), cfg)
    if obj["latent"] != codec.describe():
        raise CheckpointError(f"{path.name} was trained on other latents than the operator "
                              f"(codec {obj['latent']} vs {codec.describe()}); pass files from the same run")
    model = _module(SAMPLER_BUILDERS[stage], obj, cfg, path, device)
    if stages.get(stage).upstream:  # the operator's residual, rescaled
        return Sampler(stage, model, _residual_scale(obj, path, model.lead_steps, device), describe_file(path, obj))
    # A stage that reads no upstream samples latents themselves: standardised ones, or raw
    # ones in a file written before the prior standardised its states.
    shift, scale = _state_statistics(obj, path, codec, device)
    return Sampler(stage, model, scale, describe_file(path, obj), shift)


def _state_statistics(obj: dict[str, Any], path: Path, codec: LatentCodec,
                      device: torch.device) -> tuple[float | Tensor, float | Tensor]:
    extra = obj.get("extra") or {}
    if "state_mean" not in extra:
        return 0.0, 1.0
    try:
        shift, scale = (torch.tensor(extra[key], dtype=torch.float32, device=device)
                        for key in ("state_mean", "state_scale"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has no usable extra.state_mean/state_scale; retrain its stage") from e
    shape = (codec.tokens, codec.dim)
    if shift.shape != shape or scale.shape != shape or not bool((scale > 0).all()):
        raise CheckpointError(f"{path}: extra.state_mean/state_scale must be {list(shape)} with a positive scale")
    return shift, scale
