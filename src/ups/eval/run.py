"""Evaluate checkpoint files end to end: load, check, score, report — what `ups eval` runs.

Shared by `scripts/evaluate.py` and the orchestrator, so an evaluation inside
`run_fast_to_sota` is the same evaluation a user runs by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ups.config import Config
from ups.identity import config_hash
from ups.data.burgers import ensure_data
from ups.data.pdebench import open_split
from ups.eval.evaluation import CORRECTED, EvalResult, evaluate
from ups.eval.goals import mean_and_std
from ups.eval.goodput_view import read_record
from ups.eval.later_stages import LaterStages, evaluate_later_stages
from ups.eval.loading import later_stage_files, load_models, load_sampler
from ups.eval.protocol import ProtocolResult, table, verdict
from ups.eval.protocol_run import OPERATOR, run_protocol
from ups.eval.report import report_dict, write_reports
from ups.resume.layout import METRICS_FILE
from ups.pipeline.context import runtime_device

DEFAULT_SPLIT = "test"


@dataclass
class Evaluation:
    result: EvalResult
    report: dict[str, Any]
    paths: dict[str, Path]
    later: LaterStages
    protocol: Optional[ProtocolResult] = None

    @property
    def summary(self) -> dict[str, Any]:
        return self.report["summary"]


def eval_split(cfg: Config) -> str:
    """`eval.split`, else `data.split`, else the test split."""
    return cfg.eval.split or cfg.data.split or DEFAULT_SPLIT


def evaluate_checkpoints(cfg: Config, operator: str | Path, diffusion: Optional[str | Path], *,
                         device: Optional[str] = None, output_prefix: Optional[str | Path] = None,
                         log: Callable[[str], Any] = print) -> Evaluation:
    """Score the files on the config's evaluation split and write the reports.

    Checkpoints are loaded (and refused on any mismatch) before the data is
    touched: a wrong file fails in a second, not after generating a data set.
    The sampling stages' files beside the operator file (its run's
    checkpoint_dir) are measured too, and its `metrics.jsonl` gives the loss curves.
    """
    dev = runtime_device(cfg, device)
    models = load_models(cfg, Path(operator), Path(diffusion) if diffusion else None, dev)
    samplers = {stage: load_sampler(cfg, path, stage, models.codec, dev)
                for stage, path in later_stage_files(Path(operator)).items()}
    models.files.update({stage: s.file for stage, s in samplers.items()})
    if samplers:
        log(f"Measuring the later stages too: {', '.join(samplers)} (files beside {Path(operator).name})")
    split = eval_split(cfg)
    splits = (split, "train", "val") if cfg.eval.calibrate_spread else (split, "train")
    ensure_data(cfg.data, splits=splits if samplers else (split,), log=log)
    data = open_split(cfg.data, split)
    try:
        result = evaluate(cfg, models, data, dev)
        later = evaluate_later_stages(cfg, models, samplers, data, lambda name: open_split(cfg.data, name), dev,
                                      Path(operator).parent / METRICS_FILE, result)
        protocol = run_protocol(cfg, models, data, dev) if cfg.eval.protocol else None
    finally:
        data.close()
    context = {"config_hash": config_hash(cfg), "device": str(dev), "data_file": str(data.path),
               "goodput": read_record(Path(operator).parent)}  # the attempts that trained these files
    report = report_dict(result, models.files, context, later)
    if protocol is not None:
        add_protocol(report, protocol)
    paths = write_reports(output_prefix or cfg.eval.output_prefix, result, report, later)
    return Evaluation(result, report, paths, later, protocol)


def add_protocol(report: dict[str, Any], protocol: ProtocolResult) -> None:
    """The protocol's scores in the report, and its headline numbers in the summary."""
    report["protocol"] = protocol.as_dict()
    for name, score in protocol.scores.items():
        report["summary"][f"metric:protocol_nrmse_{name}"] = score.mean
        report["summary"][f"metric:protocol_nrmse_{name}_median"] = score.median


def key_numbers(ev: Evaluation) -> list[str]:
    """The lines printed after an evaluation: each method's nRMSE, and the verdict."""
    s, r = ev.summary, ev.result
    lines = [f"Evaluated {r.n_samples} {r.split} samples, {r.rollout_steps} rollout steps (nRMSE, PDEBench definition):",
             f"  {'method':<20} {'one-step':>10} {'rollout':>10} {'final step':>11}"]
    for m in r.methods:
        lines.append(f"  {m:<20} {r.one_step[m]:>10.4f} {r.rollout(m):>10.4f} {r.curves[m][-1]:>11.4f}")
    ratio = s["metric:nrmse"] / s["metric:nrmse_persistence"] if s["metric:nrmse_persistence"] else float("nan")
    lines.append(f"operator rollout nRMSE {s['metric:nrmse']:.4f} vs persistence {s['metric:nrmse_persistence']:.4f} "
                 f"({ratio:.2f}x)")
    if CORRECTED in r.curves:
        lines.append(f"with diffusion correction: {s['metric:nrmse_corrected']:.4f}")
    if ev.protocol is not None:
        lines += table(ev.protocol, first=(OPERATOR,)) + [verdict(ev.protocol, OPERATOR)]
    lines += later_lines(ev.later)
    pngs = [p.name for k, p in ev.paths.items() if k.startswith("png:")]
    lines += [f"wrote {p}" for k, p in ev.paths.items() if not k.startswith("png:")]
    if pngs:
        lines.append(f"wrote {len(pngs)} plots beside it: {', '.join(pngs)}")
    return lines


def later_lines(later: LaterStages) -> list[str]:
    """The sampling stages' scores, and every goal with its verdict and numbers."""
    lines = []
    if later.ensemble is not None:
        e = later.ensemble
        lines.append(f"Ensembles: {e.n_samples} samples x {e.members} sampled rollouts "
                     f"(CRPS of u; the operator's is its MAE):")
        for name, m in e.methods.items():
            o = m.overall
            cost = (f"  {m.denoiser_evals_per_draw:.3g} evals/draw  {m.seconds_per_draw * 1e6:.3g} us/draw"
                    if m.denoiser_evals_per_draw else "")
            if m.spread_inflation != 1.0:
                cost += f"  spread x{m.spread_inflation:.3g} (fitted on val)"
            lines.append(f"  {name:<20} CRPS {o['crps']:.4g}  spread/skill {o['spread_skill']:.3f}  "
                         f"mean's rollout nRMSE {o['nrmse_of_mean']:.4f}{cost}")
    if later.prior is not None:
        lines.append(f"Steady prior vs {later.prior.n_states} held-out long-time states:")
        for name, row in later.prior.rows.items():
            lines.append(f"  {name:<20} spectrum distance {mean_and_std(row, 'spectrum_distance')}  "
                         f"MMD {mean_and_std(row, 'mmd')}")
    for g in later.goals:
        lines.append(f"  [{'met' if g.met else 'NOT met'}] {g.stage}: {g.text}")
    return lines
