"""The report's pictures, drawn with matplotlib's Agg renderer into PNG bytes.

Figures are built with `matplotlib.figure.Figure` and rendered by the Agg canvas
directly, never through `pyplot`: no global figure state, no display or GUI
backend needed (the pattern of matplotlib's "Embedding in a web application
server" example, matplotlib/matplotlib galleries/examples/user_interfaces/
web_application_server_sgskip.py). Each function takes plain numbers — the
same ones the report's JSON carries — and returns the PNG file's bytes.
"""

from __future__ import annotations

import io
import logging
import math
from typing import Mapping, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ups.resume import goodput as gp

# A stale font cache (~/.cache/matplotlib, shared by every environment with the same
# matplotlib version) makes matplotlib log a "findfont: ... not found. Falling back"
# warning per family to stderr; the plot is drawn with the fallback either way, and the
# warnings must not bury the one line a command prints when it fails.
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

DPI = 100
BASELINE_STYLE = {"linestyle": "--", "linewidth": 1.3}
BASELINE_COLORS = ("tab:gray", "tab:brown", "tab:olive", "tab:cyan", "tab:pink")
TRUTH_STYLE = {"color": "black", "linewidth": 1.6, "label": "true"}
# The method label of the ensemble's one deterministic member (ups.eval.ensemble.OPERATOR: the
# operator's own rollout): a method name, not a stage; its CRPS is its MAE and it has no spread.
DETERMINISTIC = "operator"
COLORS = {"operator": "tab:blue", "operator+diffusion": "tab:purple", "diff_residual": "tab:red",
          "consistency_distill": "tab:green", "steady_prior": "tab:red", "gaussian_fit": "tab:orange",
          "train_states": "tab:gray", "held_out": "black"}
SEGMENT_COLORS = {"startup": "tab:orange", "steps": "tab:green", "saves": "tab:red", "other": "lightgray"}
END_COLORS = {gp.COMPLETED: "tab:green", gp.RUNNING: "tab:blue", gp.KILLED: "tab:red", gp.SIGTERM: "tab:purple",
              gp.SIGINT: "tab:brown", gp.FAILURE: "tab:red"}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _positive(ys: Sequence[Optional[float]]) -> list[float]:
    """Values a log axis can draw; the others become gaps."""
    return [y if y is not None and math.isfinite(y) and y > 0 else math.nan for y in ys]


def rollout_png(curves: Mapping[str, Sequence[float]], baselines: Sequence[str], title: str) -> bytes:
    """nRMSE per rollout step, one line per method, baselines dashed, log scale."""
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for name, ys in curves.items():
        if name in baselines:
            style = {**BASELINE_STYLE, "color": BASELINE_COLORS[list(baselines).index(name) % len(BASELINE_COLORS)]}
        else:  # "diff_residual ensemble mean" takes its stage's colour
            style = {"linewidth": 2.0, "color": COLORS.get(name, COLORS.get(name.split(" ")[0]))}
        ax.plot(range(1, len(ys) + 1), _positive(ys), label=name, **style)
    ax.set(yscale="log", xlabel="rollout step", ylabel="nRMSE", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def ensemble_png(methods: Mapping[str, Mapping[str, Sequence[float]]], spread_range: tuple[float, float]) -> bytes:
    """Left: CRPS per step (the operator's is its MAE). Right: spread/skill per step, goal band shaded."""
    fig = Figure(figsize=(11, 4.0))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, curves in methods.items():
        steps = range(1, len(curves["crps"]) + 1)
        label = f"{name} (MAE)" if name == DETERMINISTIC else name
        left.plot(steps, _positive(curves["crps"]), label=label, color=COLORS.get(name))
        if name != DETERMINISTIC:
            right.plot(steps, curves["spread_skill"], label=name, color=COLORS.get(name))
    left.set(yscale="log", xlabel="rollout step", ylabel="CRPS of u", title="CRPS vs rollout step")
    right.axhspan(*spread_range, color="tab:green", alpha=0.12, label=f"goal {spread_range}")
    right.axhline(1.0, color="gray", linewidth=0.8)
    right.set(xlabel="rollout step", ylabel="spread / skill", title="ensemble calibration")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def fields_png(x: Sequence[float], panels: Sequence[dict], times: Sequence[float]) -> bytes:
    """One panel per (sample, step): truth, deterministic predictions, ensemble means with +-2 std bands.

    `panels`: {"index", "step", "true", "lines": {name: ys}, "bands": {name: (mean, std)}}.
    """
    cols = max(1, len({p["step"] for p in panels}))
    rows = max(1, math.ceil(len(panels) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    for i, p in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot(x, p["true"], **TRUTH_STYLE)
        for name, ys in p["lines"].items():
            ax.plot(x, ys, label=name, color=COLORS.get(name), linewidth=1.2)
        for name, (mean, std) in p["bands"].items():
            lo = [m - 2 * s for m, s in zip(mean, std)]
            hi = [m + 2 * s for m, s in zip(mean, std)]
            ax.fill_between(x, lo, hi, color=COLORS.get(name), alpha=0.2, label=f"{name} mean +- 2 std")
            ax.plot(x, mean, color=COLORS.get(name), linewidth=1.0, linestyle=":")
        ax.set_title(f"sample {p['index']}, step {p['step']} (t = {times[p['step'] - 1]:.3g})", fontsize=9)
        ax.set(xlabel="x", ylabel="u")
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def losses_png(stage: str, curves: Mapping[str, Mapping[str, Sequence[float]]]) -> bytes:
    """Train and validation loss of one stage against its step, log scale."""
    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    for kind, series in curves.items():
        marker = "o" if kind == "val" else None
        ax.plot(series["step"], _positive(series["loss"]), label=kind, marker=marker, markersize=3)
    ax.set(yscale="log", xlabel="step", ylabel="loss", title=f"{stage}: training and validation loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def prior_png(x: Sequence[float], spectra: Mapping[str, Sequence[float]],
              examples: Mapping[str, Sequence[Sequence[float]]]) -> bytes:
    """Left: energy spectra (wavenumber >= 1) of each set. Right: a few fields of each set."""
    fig = Figure(figsize=(11, 4.0))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, e in spectra.items():
        style = {"linewidth": 2.2} if name == "held_out" else {"linewidth": 1.3}
        left.plot(range(1, len(e)), _positive(e[1:]), label=name, color=COLORS.get(name), **style)
    left.set(xscale="log", yscale="log", xlabel="wavenumber k", ylabel="E(k)", title="energy spectrum")
    for name, fields in examples.items():
        for j, ys in enumerate(fields):
            right.plot(x, ys, color=COLORS.get(name), linewidth=1.0, alpha=0.8, label=name if j == 0 else None)
    right.set(xlabel="x", ylabel="u", title="long-time states: samples")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def attempts_png(bars: Sequence[Mapping]) -> bytes:
    """One horizontal bar per training attempt on a shared clock, split into start-up, steps,
    saves and other time, labelled with how the attempt ended (`goodput_view.timeline_bars`)."""
    fig = Figure(figsize=(8.0, max(2.4, 1.2 + 0.45 * len(bars))))  # room for the legend under one bar
    ax = fig.add_subplot()
    labelled = set()
    for row, bar in enumerate(bars):
        left = bar["start_s"]
        for name, seconds in bar["segments"].items():
            label = None if name in labelled else name
            labelled.add(name)
            ax.barh(row, seconds, left=left, height=0.6, color=SEGMENT_COLORS.get(name, "gray"), label=label)
            left += seconds
        ax.text(left, row, f" {bar['end']}", va="center", fontsize=8, color=END_COLORS.get(bar["end"], "black"))
    ax.set_yticks(range(len(bars)), [bar["label"] for bar in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="seconds since the first attempt started")
    ax.margins(x=0.12)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)  # above the bars
    fig.tight_layout()
    return _png(fig)
