"""Run the pipeline: lock, plan, then each selected stage through the one loop.

Order of commitments for a stage (what makes a crash at any point safe):
resumable states are written during training (file durable, then the status
names it); at the end the output files are written, then the status marks the
stage `completed` with their digests, then the stage's states are deleted. A
crash between any two of these leaves a directory that `--auto-resume`
continues from with at most one checkpoint interval redone.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Optional

import torch

from ups.config import Config, config_hash
from ups.errors import MissingUpstreamError
from ups.models.build import architecture
from ups.resume.atomic import remove_stale_temps
from ups.resume.faults import crash_point
from ups.resume.files import OUTPUT_FORMAT, save_torch
from ups.resume.layout import OUTPUT_ROLES, STATE_DIR
from ups.resume.lock import CheckpointDirLock
from ups.resume.metadata import update_metadata
from ups.resume.plan import CONTINUE, DISABLED, SKIP, Decision, decide
from ups.resume.policy import SavePolicy
from ups.resume.rng import seed_everything
from ups.resume.saver import StateSaver, find_resume_state
from ups.resume.signals import StopRequest, TrainingInterrupted
from ups.resume.tracker import StageTracker, utc_now
from ups.resume.verify import OutputCatalog
from ups.training.context import STAGE_MODEL, PipelineContext, resolve_device
from ups.training.loop import StageRun, Trainer, steps_per_epoch
from ups.training.metrics import MetricsLogger
from ups.training.planner import format_plan, make_plan, stage_facts, upstream_fingerprint
from ups.training.stages import BY_NAME, STAGES, StageDef, stage_config

RULE = "=" * 50


@dataclass
class RunOptions:
    stage: str = "all"
    auto_resume: bool = False
    device: Optional[str] = None
    config_path: Optional[str] = None
    # Observers of durable progress (remote sync): objects with
    # on_state_saved(stage, record) and on_stage_completed(stage).
    hooks: list[Any] = field(default_factory=list)
    wandb_run: Any = None
    # Entered once the checkpoint directory is locked, before anything in it is read;
    # exited before the lock is released (remote download, W&B run, background sync).
    on_locked: Optional[Callable[[], ContextManager[Any]]] = None


def banner(text: str) -> None:
    print(f"\n{RULE}\n{text}\n{RULE}", flush=True)


def run_pipeline(cfg: Config, opts: RunOptions) -> dict[str, str]:
    """Train the selected stages; returns {stage: action taken}. Raises UpsError subclasses."""
    ckpt = cfg.checkpoint_dir
    selected = list(STAGES) if opts.stage == "all" else [BY_NAME[opts.stage]]
    with CheckpointDirLock(ckpt) as lock, StopRequest() as stop, contextlib.ExitStack() as session:
        if lock.took_over_stale_lock():
            print(f"Took over a stale lock left by {lock.previous_holder}", flush=True)
        if opts.on_locked is not None:
            session.enter_context(opts.on_locked())
        for leftover in remove_stale_temps(ckpt):
            print(f"Removed an unfinished write left by a killed run: {leftover.name}", flush=True)
        if cfg.training.num_threads:
            torch.set_num_threads(cfg.training.num_threads)
        device = resolve_device(opts.device or cfg.training.device)
        tracker = StageTracker(ckpt)
        ctx = PipelineContext.open(cfg, device)
        try:
            update_metadata(ckpt, config_hash=config_hash(cfg), architecture=architecture(cfg),
                            config_path=opts.config_path)
            return _run_stages(cfg, opts, ctx, tracker, stop, selected)
        finally:
            ctx.close()


def _run_stages(cfg, opts, ctx, tracker, stop, selected) -> dict[str, str]:
    catalog = OutputCatalog(cfg.checkpoint_dir)
    plan = make_plan(cfg, selected, tracker.get_all_statuses(), catalog, opts.auto_resume)
    if opts.auto_resume:
        _print_auto_resume(cfg, plan)
    elif any(tracker.get_stage_status(d.stage).status == "completed" for d in plan if d.action != DISABLED):
        print("Note: completed stages will be retrained; pass --auto-resume to skip verified ones.")
    print("\n".join(format_plan(plan)), flush=True)
    log = MetricsLogger(cfg.checkpoint_dir, cfg.logging.progress, opts.wandb_run)
    taken: dict[str, str] = {}
    try:
        for stage in selected:
            if stop.requested:
                raise TrainingInterrupted(stop.signum, "stopped by signal between stages; nothing was lost")
            # Decided again now: an upstream stage that just finished has real digests.
            facts = stage_facts(cfg, stage, tracker.get_stage_status(stage.name), catalog, ())
            decision = decide(facts, opts.auto_resume)
            taken[stage.name] = _run_one(cfg, opts, ctx, tracker, stop, log, catalog, stage, decision)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
                print("✓ Cleared GPU cache")
    finally:
        log.close()
    _finish(cfg, tracker, opts)
    return taken


def _print_auto_resume(cfg: Config, plan: list[Decision]) -> None:
    banner("AUTO-RESUME ENABLED")
    skipped = [d.stage for d in plan if d.action == SKIP]
    if skipped:
        print(f"✓ Found completed stages: {', '.join(skipped)}")
        print("  Setting epochs=0 for completed stages to skip them")
        for name in skipped:
            print(f"  - {name}: {cfg.stage(name).epochs} epochs → 0 epochs (skipping)")
    else:
        print("  No completed stages found, starting from beginning")
    for d in plan:
        for w in d.warnings:
            print(f"⚠️  {w}")
    print(RULE + "\n", flush=True)


def _run_one(cfg, opts, ctx, tracker, stop, log, catalog, stage: StageDef, decision: Decision) -> str:
    if decision.action in (SKIP, DISABLED):
        banner(f"STAGE {stage.index}/4: Skipping {stage.title} (epochs<=0)")
        if decision.action == SKIP:
            print(f"  {stage.name}: {decision.reason}")
            _saver(cfg, stage, tracker, opts).clear()  # states a kill left after completion
        return "skipped"
    banner(f"STAGE {stage.index}/4: {stage.train_banner}")
    print(f"  {stage.name}: {decision.reason}", flush=True)
    _require_upstream(cfg, stage, tracker, catalog)
    _train(cfg, opts, ctx, tracker, stop, log, catalog, stage, decision)
    return "retrained" if decision.action != CONTINUE else "continued"


def _require_upstream(cfg: Config, stage: StageDef, tracker: StageTracker, catalog: OutputCatalog) -> None:
    """Never train on a random upstream: each needed file must exist and verify."""
    for up in stage.depends_on:
        upstream = BY_NAME[up]
        entry = tracker.get_stage_status(up)
        missing = [f for f in upstream.outputs if catalog.digest(f) is None]
        problems = catalog.problems(entry.outputs) if entry.outputs else []
        if missing or problems:
            what = "; ".join(problems) or f"{', '.join(missing)} missing"
            raise MissingUpstreamError(
                f"stage '{stage.name}' needs the outputs of stage '{up}' in {cfg.checkpoint_dir}/, but {what}. "
                f"Train it first: python scripts/train.py --config <config> --stage {up} "
                f"(or --stage all --auto-resume)"
            )


def _train(cfg, opts, ctx, tracker, stop, log, catalog, stage: StageDef, decision: Decision) -> None:
    config = stage_config(cfg, stage)
    fp = upstream_fingerprint(config, stage, catalog)
    seed_everything(cfg.training.seed + stage.index)
    task = stage.builder()(ctx)
    settings = cfg.stage(stage.name)
    saver = _saver(cfg, stage, tracker, opts)
    resume = None
    if decision.action == CONTINUE:
        resume = find_resume_state(saver.state_dir, stage.name, fp, tracker.get_stage_status(stage.name).resume_state,
                                   lambda m: print(m, flush=True))
        if resume is None:
            print("  no usable saved state found; starting the stage over", flush=True)
    total_steps = settings.epochs * steps_per_epoch(task.train.n_items, settings.batch_size)
    if resume is not None:
        tracker.mark_stage_resumed(stage.name, total_epochs=settings.epochs, total_steps=total_steps)
        log.truncate(stage.name, after_step=resume["step"])
    else:
        saver.clear()
        tracker.mark_stage_started(stage.name, total_epochs=settings.epochs, total_steps=total_steps,
                                   fingerprint=fp, config=config)
        log.truncate(stage.name, after_step=0)
    run = StageRun(
        name=stage.name, index=stage.index, settings=settings, fingerprint=fp, seed=cfg.training.seed,
        device=ctx.device, saver=saver, policy=SavePolicy(cfg.checkpoint.every_steps, cfg.checkpoint.every_seconds),
        stop=stop, log=log, precision=cfg.training.precision, compile=cfg.training.compile,
        log_every=cfg.logging.log_every_steps, global_offset=_global_offset(cfg, ctx, stage), resume=resume,
    )
    trainer = _fit(Trainer(task, run), tracker, stage)
    started = time.perf_counter()
    outputs = _write_outputs(cfg, ctx, stage, trainer, task.extra, fp, config)
    catalog.forget(stage.outputs)
    crash_point(f"after-outputs:{stage.name}")
    tracker.mark_stage_completed(stage.name, stage.checkpoint, outputs=outputs, fingerprint=fp, config=config)
    crash_point(f"after-stage:{stage.name}")
    saver.clear()
    print(f"  wrote {', '.join(outputs)} in {time.perf_counter() - started:.2f}s", flush=True)
    for hook in opts.hooks:
        hook.on_stage_completed(stage.name)


def _fit(trainer: Trainer, tracker: StageTracker, stage: StageDef) -> Trainer:
    try:
        trainer.run_to_end()
    except TrainingInterrupted:
        tracker.mark_stage_interrupted(stage.name, step=trainer.pos.step, epoch=trainer.pos.epoch)
        raise
    except Exception as e:
        with contextlib.suppress(Exception):
            trainer.run.saver.wait()  # let the last good state land before recording the failure
        tracker.mark_stage_failed(stage.name, f"{type(e).__name__}: {e}")
        raise
    return trainer


def _saver(cfg: Config, stage: StageDef, tracker: StageTracker, opts: RunOptions) -> StateSaver:
    def committed(record: dict[str, Any]) -> None:
        tracker.record_progress(stage.name, step=record["step"], epoch=record["epoch"], resume_state=record)
        for hook in opts.hooks:
            hook.on_state_saved(stage.name, record)

    return StateSaver(cfg.checkpoint_dir / STATE_DIR / stage.name, committed, keep=cfg.checkpoint.keep)


def _write_outputs(cfg, ctx, stage: StageDef, trainer: Trainer, extra, fp: str, config) -> dict[str, Any]:
    """Write the stage's files (atomically, no timestamps: same weights, same bytes)."""
    arch = architecture(cfg)[STAGE_MODEL[stage.name]]
    weights = {"model": trainer.model.state_dict(), "ema": trainer.ema.module.state_dict()}
    outputs = {}
    for name in stage.outputs:
        role = OUTPUT_ROLES[name]
        outputs[name] = save_torch({
            "format": OUTPUT_FORMAT, "stage": stage.name, "role": role, "state_dict": weights[role],
            "architecture": arch, "latent": ctx.codec.describe(), "fingerprint": fp, "config": config,
            "step": trainer.pos.step, "extra": dict(extra),
        }, cfg.checkpoint_dir / name)
    return outputs


def _global_offset(cfg: Config, ctx: PipelineContext, stage: StageDef) -> int:
    """Steps of the stages before this one: a W&B step that survives any resume."""
    total = 0
    for earlier in STAGES[: stage.index - 1]:
        s = cfg.stage(earlier.name)
        n = ctx.pairs("train").n_items if earlier.name != "steady_prior" else ctx.long_time_states("train").n_items
        total += s.epochs * steps_per_epoch(n, s.batch_size)
    return total


def _finish(cfg: Config, tracker: StageTracker, opts: RunOptions) -> None:
    statuses = tracker.get_all_statuses()
    enabled = [s.name for s in STAGES if cfg.stage(s.name).epochs > 0]
    done = all(statuses[s].status == "completed" for s in enabled)
    if done:
        update_metadata(cfg.checkpoint_dir, trained=True, trained_at=utc_now())
        banner("✓ All training stages complete!")
    else:
        left = [s for s in enabled if statuses[s].status != "completed"]
        print(f"\nStages not yet completed: {', '.join(left)}", flush=True)
