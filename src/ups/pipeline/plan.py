"""Gather the facts about each stage on disk and turn them into a printed resume plan.

The decisions themselves are `ups.resume.plan.decide` (pure); this module is the
mechanism that feeds it: the status file, the digests of the files present
(hashed at most once per process), and the fingerprint the config gives now.
"""

from __future__ import annotations

from typing import Any, Iterable

from ups import stages
from ups.config import Config
from ups.identity import stage_identity
from ups.resume.adopt import unrecorded_output_problems
from ups.resume.plan import CONTINUE, DISABLED, RUN, SKIP, Decision, StageFacts, decide, fingerprint
from ups.resume.tracker import StageStatus
from ups.resume.verify import OutputCatalog
from ups.stages import StageSpec

ACTION_LABEL = {SKIP: "skip", CONTINUE: "continue", RUN: "run", DISABLED: "off"}


def stage_facts(
    cfg: Config, stage: StageSpec, entry: StageStatus, catalog: OutputCatalog, pending: Iterable[str]
) -> StageFacts:
    """Facts for `decide`; `pending` names upstream stages that will be retrained first."""
    config = stage_identity(cfg, stage)
    pending = tuple(u for u in stage.upstream if u in set(pending))
    fp = None if pending else upstream_fingerprint(config, stage, catalog)
    completed = entry.status == "completed"
    problems: list[str] = catalog.problems(entry.outputs) if completed and entry.outputs else []
    if completed and not entry.outputs and not pending:  # nothing recorded to verify: load the files
        problems = unrecorded_output_problems(cfg.checkpoint_dir, stage.name, stage.files, fp)
    return StageFacts(
        name=stage.name,
        epochs=cfg.stage(stage.name).epochs,
        status=entry.status,
        recorded_fingerprint=entry.fingerprint,
        recorded_config=entry.config,
        config=config,
        fingerprint=fp,
        output_problems=tuple(problems),
        has_digests=bool(entry.outputs),
        saved_step=(entry.resume_state or {}).get("step"),
        error_message=entry.error_message,
        pending_upstream=pending,
    )


def upstream_fingerprint(config: dict[str, Any], stage: StageSpec, catalog: OutputCatalog) -> str:
    upstream = {u: catalog.shas(stages.get(u).files) for u in stage.upstream}
    return fingerprint(config, upstream)


def make_plan(
    cfg: Config, selected: list[StageSpec], statuses: dict[str, StageStatus], catalog: OutputCatalog,
    auto_resume: bool,
) -> list[Decision]:
    """Decide every selected stage in order; a stage that will run makes its dependants pending."""
    decisions, pending = [], set()
    for stage in selected:
        facts = stage_facts(cfg, stage, statuses[stage.name], catalog, pending)
        d = decide(facts, auto_resume)
        if d.action in (RUN, CONTINUE):
            pending.add(stage.name)
        decisions.append(d)
    return decisions


def format_plan(decisions: list[Decision]) -> list[str]:
    lines = ["Resume plan:"]
    for d in decisions:
        index = stages.get(d.stage).index
        lines.append(f"  {index}/{stages.count()} {d.stage:<20} {ACTION_LABEL[d.action]:<9} {d.reason}")
    return lines

