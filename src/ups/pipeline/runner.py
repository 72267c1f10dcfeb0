"""Run the pipeline: plan, then each selected stage through the one loop (`ups.job` locks first).

Order of commitments for a stage (what makes a crash at any point safe):
resumable states are written during training (file durable, then the status
names it); at the end the output files are written, then the status marks the
stage `completed` with their digests, then the stage's states are deleted. A
crash between any two of these leaves a directory that `--auto-resume`
continues from with at most one checkpoint interval redone.

Under torchrun every rank runs this same sequence. What touches the checkpoint
directory runs on rank 0 only (`group.rank0_only`: the others wait and stop with
its error if it fails); what the other ranks need from it — each stage's
decision, the resume state — rank 0 decides and sends (`group.rank0_shares`).
A restarted torchrun group (TORCHELASTIC_RESTART_COUNT > 0) always resumes.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ups import stages
from ups.config import Config
from ups.identity import config_hash
from ups.stages import StageSpec
from ups.errors import MissingUpstreamError
from ups.models.build import architecture
from ups.resume.files import OUTPUT_FORMAT, save_torch
from ups.resume.metadata import update_metadata
from ups.resume.plan import CONTINUE, DISABLED, RUN, SKIP, Decision, decide
from ups.resume.interval import AdaptiveSavePolicy
from ups.resume.policy import SavePolicy
from ups.resume.rng import seed_everything
from ups.resume.signals import StopRequest, TrainingInterrupted
from ups.resume.tracker import StageTracker, utc_now
from ups.resume.verify import OutputCatalog
from ups.training.accounting import NullMeter, RunAccounting
from ups.training.checkpointer import Checkpointer, Opened
from ups.pipeline.context import PipelineContext
from ups.parallel import Solo, restart_count
from ups.training.loop import StageTraining, StageTask, Trainer, steps_per_epoch
from ups.training.metrics import MetricsLogger, SilentLog
from ups.pipeline.plan import format_plan, make_plan, stage_facts
from ups.training.trial import restore_problem

RULE = "=" * 50


@dataclass(frozen=True)
class RunOptions:
    """What the command line asks of the pipeline run; never changed once made."""

    stage: str = "all"
    auto_resume: bool = False
    device: Optional[str] = None
    config_path: Optional[str] = None
    config_overrides: tuple[str, ...] = ()  # the --set items, for the "continue with" hint


def banner(text: str) -> None:
    print(f"\n{RULE}\n{text}\n{RULE}", flush=True)


@dataclass
class _Pipeline:
    """What every stage of one run shares. `tracker` is None on ranks other than 0."""

    cfg: Config
    auto_resume: bool
    ctx: Optional[PipelineContext]  # None when the plan trains nothing
    stop: StopRequest
    group: Solo
    tracker: Optional[StageTracker]
    catalog: OutputCatalog
    observers: tuple = ()  # told of durable progress: on_state_saved(stage, record), on_stage_completed(stage)
    wandb_run: Any = None
    log: Any = None
    acct: Optional[RunAccounting] = None  # rank 0: the goodput record and the auto interval


def run_pipeline(cfg: Config, opts: RunOptions, group: Solo, stop: StopRequest, tracker: Optional[StageTracker],
                 wandb_run: Any = None, observers: tuple = ()) -> dict[str, str]:
    """Plan, then train the selected stages in the locked directory (`ups.job` takes it);
    returns {stage: action taken}. Raises UpsError subclasses."""
    ckpt = cfg.checkpoint_dir
    selected = list(stages.STAGES) if opts.stage == "all" else [stages.get(opts.stage)]
    auto_resume = opts.auto_resume
    if restart_count() and not auto_resume:  # a restart must continue the attempt it replaces, not redo it
        print(f"torchrun restart {restart_count()}: resuming as with --auto-resume", flush=True)
        auto_resume = True
    catalog = OutputCatalog(ckpt)
    acct = group.rank0_only(lambda: RunAccounting(tracker, cfg, list(observers)))
    plan = group.rank0_shares(lambda: _print_plan(cfg, auto_resume, tracker, catalog, group, selected, acct))
    # A pipeline with nothing to train never opens its data (resume of a finished run is instant).
    trains = any(d.action in (RUN, CONTINUE) for d in plan)
    with contextlib.ExitStack() as recording:
        if trains and acct is not None:
            recording.enter_context(acct.recording(lambda: wandb_run))
        ctx = group.rank0_first(lambda: PipelineContext.open(cfg, group.device, share=group.rank0_shares)) if trains \
            else None
        try:
            group.rank0_only(lambda: update_metadata(ckpt, config_hash=config_hash(cfg), architecture=architecture(cfg),
                                                  config_path=opts.config_path,
                                                  config_overrides=list(opts.config_overrides)))
            p = _Pipeline(cfg, auto_resume, ctx, stop, group, tracker, catalog, tuple(observers), wandb_run, acct=acct)
            return _run_stages(p, selected)
        finally:
            if ctx is not None:
                ctx.close()


def _run_stages(p: _Pipeline, selected: list[StageSpec]) -> dict[str, str]:
    cfg, group = p.cfg, p.group
    writes = group.is_main  # rank 0 alone writes metrics.jsonl and logs to W&B
    p.log = MetricsLogger(cfg.checkpoint_dir, cfg.logging.progress, p.wandb_run) if writes else SilentLog()
    taken: dict[str, str] = {}
    try:
        for stage in selected:
            signum = group.agree_now(p.stop.signum or 0)
            if signum:
                raise TrainingInterrupted(signum, "stopped by signal between stages; nothing was lost")
            # Decided again now: an upstream stage that just finished has real digests.
            turn = group.rank0_shares(lambda: _announce(p, stage))
            taken[stage.name] = _run_one(p, stage, turn)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
                print("✓ Cleared GPU cache")
    finally:
        p.log.close()
    group.rank0_only(lambda: _finish(cfg, p.tracker))
    return taken


def _print_plan(cfg: Config, auto_resume: bool, tracker: StageTracker, catalog: OutputCatalog, group: Solo,
                selected: list[StageSpec], acct: Optional[RunAccounting] = None) -> list[Decision]:
    """Rank 0: decide every selected stage up front and print the plan (each stage is decided again
    when its turn comes, once its upstream stages have their final digests)."""
    plan = make_plan(cfg, selected, tracker.get_all_statuses(), catalog, auto_resume)
    if auto_resume:
        _print_auto_resume(cfg, plan)
    elif any(tracker.get_stage_status(d.stage).status == "completed" for d in plan if d.action != DISABLED):
        print("Note: completed stages will be retrained; pass --auto-resume to skip verified ones.")
    if group.distributed:
        print(f"Training with {group.world_size} processes (DDP); rank 0 writes {cfg.checkpoint_dir}/")
    print("\n".join(format_plan(plan)), flush=True)
    if acct is not None:
        print("\n".join(acct.plan_lines()), flush=True)
    return plan


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


@dataclass(frozen=True)
class _Turn:
    """A stage's decision when its turn comes, and its identity (fingerprint, config) as decided:
    computed once, here, and used for what the stage records."""

    decision: Decision
    identity: tuple[Optional[str], dict[str, Any]]


def _announce(p: _Pipeline, stage: StageSpec) -> _Turn:
    """Rank 0: decide the stage, say so, and check that a stage about to train has its inputs."""
    facts = stage_facts(p.cfg, stage, p.tracker.get_stage_status(stage.name), p.catalog, ())
    decision = decide(facts, p.auto_resume)
    turn = _Turn(decision, (facts.fingerprint, facts.config))
    if decision.action in (SKIP, DISABLED):
        # "(epochs<=0)" for a completed stage too: the spec asserts this banner literally (it sets epochs=0 for them)
        banner(f"STAGE {stage.index}/{stages.count()}: Skipping {stage.title} (epochs<=0)")
        if decision.action == SKIP:
            print(f"  {stage.name}: {decision.reason}")
            if decision.record_digests:
                _record_checked_outputs(p, stage, turn.identity)
            Checkpointer.discard_states(stage, p.cfg)
        return turn
    banner(f"STAGE {stage.index}/{stages.count()}: {stage.train_banner}")
    print(f"  {stage.name}: {decision.reason}", flush=True)
    _require_upstream(p.cfg, stage, p.tracker, p.catalog)
    return turn


def _record_checked_outputs(p: _Pipeline, stage: StageSpec, identity: tuple[Optional[str], dict[str, Any]]) -> None:
    """Digests of outputs that were just loaded and checked: the next resume verifies them."""
    outputs = {name: p.catalog.digest(name) for name in stage.files}
    fingerprint, config = identity
    p.tracker.mark_stage_completed(stage.name, stage.checkpoint, outputs=outputs, fingerprint=fingerprint,
                                   config=config)


def _run_one(p: _Pipeline, stage: StageSpec, turn: _Turn) -> str:
    if turn.decision.action in (SKIP, DISABLED):
        return "skipped"
    _train(p, stage, turn)
    return "retrained" if turn.decision.action != CONTINUE else "continued"


def _require_upstream(cfg: Config, stage: StageSpec, tracker: StageTracker, catalog: OutputCatalog) -> None:
    """Never train on a random upstream: each needed file must exist and verify."""
    for up in stage.upstream:
        upstream = stages.get(up)
        entry = tracker.get_stage_status(up)
        missing = [f for f in upstream.files if catalog.digest(f) is None]
        problems = catalog.problems(entry.outputs) if entry.outputs else []
        if missing or problems:
            what = "; ".join(problems) or f"{', '.join(missing)} missing"
            raise MissingUpstreamError(
                f"stage '{stage.name}' needs the outputs of stage '{up}' in {cfg.checkpoint_dir}/, but {what}. "
                f"Train it first: python scripts/train.py --config <config> --stage {up} "
                f"(or --stage all --auto-resume)"
            )


def _train(p: _Pipeline, stage: StageSpec, turn: _Turn) -> None:
    cfg, group, decision = p.cfg, p.group, turn.decision
    seed_everything(cfg.training.seed + stage.index)
    task = stage.builder()(p.ctx, p.ctx.source(stage.data, "train"), p.ctx.source(stage.data, "val"))
    group.seed_rank(cfg.training.seed + stage.index)
    settings = cfg.stage(stage.name)
    group.check_batch(stage.name, settings.batch_size, task.train.n_items)  # before anything is recorded
    ckpt = Checkpointer.for_stage(stage, cfg, group, _policy(cfg, p.acct), p.tracker, p.observers)
    total_steps = settings.epochs * steps_per_epoch(task.train.n_items, settings.batch_size)

    def check(state: dict[str, Any]) -> Optional[str]:
        return restore_problem(task, stage.name, stage.index, settings, state, p.ctx.device)

    resume_from = decision.from_step if decision.action == CONTINUE else None
    opened = group.rank0_shares(lambda: ckpt.load(turn.identity, p.log, total_steps, resume_from, check))
    start = opened.resume["step"] if opened.resume else 0
    ckpt.begin(opened, p.acct.stage(stage.name, start) if p.acct is not None else NullMeter())
    warn = _warner(p, stage)
    if settings.batch_size > task.train.n_items:
        warn(f"stage '{stage.name}': batch_size {settings.batch_size} is larger than its {task.train.n_items} "
             f"training items, so every step uses all of them; set stages.{stage.name}.batch_size "
             f"<= {task.train.n_items} to silence this")
    training = StageTraining(
        name=stage.name, index=stage.index, settings=settings, fingerprint=opened.fingerprint,
        seed=cfg.training.seed, device=p.ctx.device, checkpointer=ckpt, stop=p.stop, log=p.log,
        precision=cfg.training.precision, compile=cfg.training.compile, log_every=cfg.logging.log_every_steps,
        global_offset=_global_offset(cfg, p.ctx, stage), resume=opened.resume, group=group, warn=warn,
    )
    trainer = _fit(Trainer(task, training), p, stage, ckpt)
    group.rank0_only(lambda: _complete(p, stage, trainer, task, opened, ckpt))


def _policy(cfg: Config, acct: Optional[RunAccounting]) -> SavePolicy:
    """Fixed seconds, or `auto`: rank 0 asks its record for T at each step (the other ranks follow
    rank 0's time-based requests, so theirs never fires)."""
    every = cfg.checkpoint.every_seconds
    if every != "auto":
        return SavePolicy(cfg.checkpoint.every_steps, every)
    interval = acct.interval_seconds if acct is not None else (lambda: float("inf"))
    return AdaptiveSavePolicy(cfg.checkpoint.every_steps, None, interval=interval)


def _complete(p: _Pipeline, stage: StageSpec, trainer: Trainer, task: StageTask, opened: Opened,
              ckpt: Checkpointer) -> None:
    """Rank 0: outputs durable, then the checkpointer records the stage completed."""
    started = time.perf_counter()
    outputs = _write_outputs(p.cfg, p.ctx, stage, trainer, task.extra, opened.fingerprint, opened.config)
    ckpt.complete(outputs, p.catalog)
    print(f"  wrote {', '.join(outputs)} in {time.perf_counter() - started:.2f}s", flush=True)


def _fit(trainer: Trainer, p: _Pipeline, stage: StageSpec, ckpt: Checkpointer) -> Trainer:
    try:
        trainer.train_to_end()
    except TrainingInterrupted:  # every rank stopped at this step (agreed), after the state was saved
        p.group.rank0_only(lambda: ckpt.interrupted(trainer.pos.step, trainer.pos.epoch))
        raise
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once; the last committed state stands
        ckpt.interrupted()
        raise
    except Exception as e:
        lost = p.group.lost_peer(e, f"at step {trainer.pos.step} of stage '{stage.name}'")
        ckpt.fail(str(lost) if lost else f"{type(e).__name__}: {e}")
        if lost is not None:
            raise lost from e
        raise
    return trainer


def _warner(p: _Pipeline, stage: StageSpec) -> Callable[[str], None]:
    """A warning goes to the log and (rank 0) into the stage's status, where `ups status` shows it."""
    def warn(message: str) -> None:
        print(f"⚠️  {message}", flush=True)
        if p.tracker is not None:
            p.tracker.record_warning(stage.name, message)

    return warn


def _write_outputs(cfg, ctx, stage: StageSpec, trainer: Trainer, extra, fp: str, config) -> dict[str, Any]:
    """Write the stage's files (atomically, no timestamps: same weights, same bytes)."""
    arch = architecture(cfg)[stage.model]
    weights = {"model": trainer.model.state_dict(), "ema": trainer.ema.module.state_dict()}
    outputs = {}
    for out in stage.outputs:
        outputs[out.file] = save_torch({
            "format": OUTPUT_FORMAT, "stage": stage.name, "role": out.role, "state_dict": weights[out.role],
            "architecture": arch, "latent": ctx.codec.describe(), "fingerprint": fp, "config": config,
            "step": trainer.pos.step, "extra": dict(extra),
        }, cfg.checkpoint_dir / out.file)
    return outputs


def _global_offset(cfg: Config, ctx: PipelineContext, stage: StageSpec) -> int:
    """Steps of the stages before this one: a W&B step that survives any resume."""
    total = 0
    for earlier in stages.STAGES[: stage.index - 1]:
        s = cfg.stage(earlier.name)
        total += s.epochs * steps_per_epoch(ctx.n_items(earlier.data, "train"), s.batch_size)
    return total


def _finish(cfg: Config, tracker: StageTracker) -> None:
    statuses = tracker.get_all_statuses()
    enabled = [s.name for s in stages.STAGES if cfg.stage(s.name).epochs > 0]
    done = all(statuses[s].status == "completed" for s in enabled)
    if done:
        update_metadata(cfg.checkpoint_dir, trained=True, trained_at=utc_now())
        banner("✓ All training stages complete!")
    else:
        left = [s for s in enabled if statuses[s].status != "completed"]
        print(f"\nStages not yet completed: {', '.join(left)}", flush=True)
