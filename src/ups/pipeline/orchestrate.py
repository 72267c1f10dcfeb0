"""`run_fast_to_sota`: validate the config, check the data, train, then a small and a full eval.

One command from nothing to numbers, safe to rerun: training runs with
`--auto-resume` (a rerun after a crash continues where it stopped), and a
training already finished for the same config hash, with every stage's outputs
verified, is skipped (`Skipping training`) unless `--force-train`. Each
evaluation's headline numbers are recorded in `metadata.json`
(`last_small_eval` / `last_full_eval`, with `metric:nrmse`, and their times).

Eval configs are overlays: a YAML file merged over the training config (e.g.
only an `eval:` section), so they cannot drift from the architecture trained.
A full config works as an overlay too.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
from pathlib import Path
from typing import Any, Optional

from ups.config import Config, config_from_dict
from ups.config_yaml import apply_overrides, read_yaml
from ups.identity import config_hash
from ups.errors import CheckpointError, ConfigError, UpsError
from ups.resume.layout import STAGE_CHECKPOINT, STATUS_FILE
from ups.resume.metadata import read_metadata, update_metadata
from ups.resume.tracker import utc_now

RULE = "=" * 60
STEPS = ("Validate config", "Check data", "Train", "Small eval", "Full eval")


class StepFailed(UpsError):
    """A step's child process failed; the orchestrator exits with its code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def step(index: int) -> None:
    print(f"\n{RULE}\nSTEP {index}/{len(STEPS)}: {STEPS[index - 1]}\n{RULE}", flush=True)


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` over `base`, section by section (mappings merge, anything else replaces)."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def train_overrides(extra: list[str]) -> list[str]:
    """The `--set` overrides among the extra training args: the orchestrator applies them too."""
    from ups.commands.train import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(["--config", "x", *extra])
    except SystemExit as e:
        why = (err.getvalue().strip().splitlines() or ["invalid"])[-1]
        raise ConfigError(f"--train-extra-arg {' '.join(extra)!r} is not valid for scripts/train.py: {why}") from e
    return list(args.overrides)


def load_configs(args: argparse.Namespace) -> tuple[Config, dict[str, Any]]:
    """The training config (with the extra args' --set overrides) and its raw dict."""
    raw = apply_overrides(read_yaml(args.train_config), train_overrides(args.extra))
    return config_from_dict(raw, source=args.train_config), raw


def eval_config(train_raw: dict[str, Any], train_path: str, overlay_path: Optional[str]) -> Config:
    if overlay_path is None:
        return config_from_dict(train_raw, source=train_path)
    merged = merge(train_raw, read_yaml(overlay_path))
    return config_from_dict(merged, source=f"{overlay_path} (over {train_path})")


def validate(cfg: Config, raw: dict[str, Any], args: argparse.Namespace) -> None:
    """Fail in the first second on anything that would fail an hour later."""
    from ups.models.latent import check_sizes

    for path in (args.small_eval_config, args.full_eval_config):
        if path is not None:
            eval_config(raw, args.train_config, path)
    if cfg.data.generate:
        try:
            check_sizes(cfg.data.generator.nx, cfg.latent.tokens, cfg.latent.dim)
        except ValueError as e:
            raise ConfigError(f"{args.train_config}: {e}") from e
    print(f"✓ {args.train_config} is valid (config hash {config_hash(cfg)}, checkpoints in {cfg.checkpoint_dir})")


def training_done(cfg: Config) -> tuple[bool, str]:
    """Whether training for this exact config is finished, its outputs verified — and why (not)."""
    meta = read_metadata(cfg.checkpoint_dir)
    if not meta.get("trained"):
        return False, "not trained yet"
    if meta.get("config_hash") != config_hash(cfg):
        return False, f"config changed since training (hash {meta.get('config_hash')} → {config_hash(cfg)})"
    if not (cfg.checkpoint_dir / STATUS_FILE).is_file():
        return False, f"no {STATUS_FILE}"
    from ups.resume.plan import DISABLED, SKIP
    from ups.resume.tracker import StageTracker
    from ups.resume.verify import OutputCatalog
    from ups.pipeline.plan import make_plan
    from ups.stages import STAGES

    statuses = StageTracker(cfg.checkpoint_dir, verbose=False).get_all_statuses()
    plan = make_plan(cfg, list(STAGES), statuses, OutputCatalog(cfg.checkpoint_dir), auto_resume=True)
    todo = [d for d in plan if d.action not in (SKIP, DISABLED)]
    if todo:
        return False, f"stage '{todo[0].stage}': {todo[0].reason}"
    return True, f"already trained for config hash {config_hash(cfg)} at {meta.get('trained_at')}, outputs verified"


def train(cfg: Config, args: argparse.Namespace) -> None:
    from ups.pipeline.subprocess_train import run_forwarding_signals, train_command

    if args.skip_training:
        print("Skipping training (--skip-training)")
        return
    done, why = training_done(cfg)
    if done and not args.force_train:
        print(f"Skipping training: {why} (pass --force-train to retrain)")
        return
    print(f"Training: {'--force-train' if args.force_train else why}")
    rc = run_forwarding_signals(train_command(args.train_config, args.extra, auto_resume=not args.force_train))
    if rc != 0:
        hint = "; rerun this command to continue from the saved state" if rc in (130, 143) else ""
        raise StepFailed(f"training exited with code {rc}{hint}", rc)


def checkpoint_files(cfg: Config) -> tuple[Path, Optional[Path]]:
    """The operator EMA, and the diffusion EMA when the run has one; every stage file evaluation reads
    (the later stages' too) is checked against its recorded digest."""
    from ups.resume.tracker import StageTracker
    from ups.resume.verify import OutputCatalog

    ckpt = cfg.checkpoint_dir
    operator = ckpt / STAGE_CHECKPOINT["operator"]
    diffusion = ckpt / STAGE_CHECKPOINT["diff_residual"]
    if not operator.is_file():
        raise CheckpointError(f"no {operator.name} in {ckpt}/: train first (drop --skip-training)")
    if (ckpt / STATUS_FILE).is_file():
        tracker, catalog = StageTracker(ckpt, verbose=False), OutputCatalog(ckpt)
        for stage, used in STAGE_CHECKPOINT.items():  # evaluation reads every stage's file beside the operator
            recorded = tracker.get_stage_status(stage).outputs or {}
            problems = catalog.problems({k: v for k, v in recorded.items() if k == used})
            if problems:
                raise CheckpointError(f"{ckpt}: {'; '.join(problems)} — refusing to evaluate and record "
                                      "numbers for weights that are not the ones training wrote")
    return operator, diffusion if diffusion.is_file() else None


def evaluate(kind: str, cfg: Config, raw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run one evaluation (`small` or `full`) and record it in metadata.json."""
    from ups.eval.run import evaluate_checkpoints, key_numbers

    overlay = getattr(args, f"{kind}_eval_config")
    ecfg = eval_config(raw, args.train_config, overlay)
    prefix = ecfg.eval.output_prefix
    if prefix == cfg.eval.output_prefix:  # the overlay did not choose its own: keep small and full apart
        prefix = f"{prefix}_{kind}"
    operator, diffusion = checkpoint_files(cfg)
    ev = evaluate_checkpoints(ecfg, operator, diffusion, device=args.device, output_prefix=prefix)
    print("\n".join(key_numbers(ev)), flush=True)
    record = {**ev.summary, "report": str(ev.paths["html"]), "eval_config": overlay or args.train_config,
              "checkpoints": {role: f["sha256"] for role, f in ev.report["checkpoints"].items()}}
    update_metadata(cfg.checkpoint_dir, **{f"last_{kind}_eval": record, f"last_{kind}_eval_at": utc_now()})
    return record


def run_fast_to_sota(args: argparse.Namespace) -> int:
    step(1)
    cfg, raw = load_configs(args)
    if args.skip_validation:
        print("Skipping validation (--skip-validation): the config loaded and is well-formed")
    else:
        validate(cfg, raw, args)
    step(2)
    if args.skip_data_check:
        print("Skipping data check (--skip-data-check)")
    else:
        from ups.data.burgers import ensure_data

        ensure_data(cfg.data)
    step(3)
    train(cfg, args)
    results = {}
    for index, kind in ((4, "small"), (5, "full")):
        step(index)
        if getattr(args, f"skip_{kind}_eval"):
            print(f"Skipping {kind} eval (--skip-{kind}-eval)")
            continue
        results[kind] = evaluate(kind, cfg, raw, args)
    print(f"\n{RULE}\n✓ Done." + "".join(f" {k} eval nRMSE {r['metric:nrmse']:.4f}." for k, r in results.items()))
    return 0
