"""Line charts as inline SVG text: plots for a report that needs no library, CDN or network.

A report must open anywhere, offline, years later; an `<svg>` element written
into the HTML does. Only what the report draws is supported: a few labelled
series on linear axes with ticks, a legend and a title.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
MARGIN = {"left": 64, "right": 16, "top": 50, "bottom": 46}
CHAR_WIDTH = 6.5  # approximate width of an 11px legend character, to lay legend entries in a row


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    dashed: bool = False


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi] (1, 2, 5 x 10^k spacing)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, k = [], 0
    while not ticks or ticks[-1] < hi - step * 1e-9:
        v = first + k * step
        ticks.append(0.0 if abs(v) < step * 1e-9 else round(v, 12))
        k += 1
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Integer exponents covering [lo, hi] (values are log10 already)."""
    first, last = math.floor(lo), math.ceil(hi)
    return [float(k) for k in range(first, max(last, first + 1) + 1)]


def _fmt(v: float) -> str:
    return f"{v + 0.0:.3g}"  # + 0.0 turns -0.0 into 0.0


def _finite(series: Sequence[Series]) -> tuple[list[float], list[float]]:
    xs = [x for s in series for x, y in zip(s.xs, s.ys) if math.isfinite(x) and math.isfinite(y)]
    ys = [y for s in series for x, y in zip(s.xs, s.ys) if math.isfinite(x) and math.isfinite(y)]
    return xs or [0.0, 1.0], ys or [0.0, 1.0]


def _log_series(series: Sequence[Series]) -> list[Series]:
    """log10 of y; values <= 0 cannot be drawn on a log axis and become gaps."""
    return [Series(s.label, s.xs, [math.log10(y) if y > 0 else math.nan for y in s.ys], s.dashed) for s in series]


def line_chart(series: Sequence[Series], title: str, xlabel: str, ylabel: str,
               width: int = 560, height: int = 320, y_from_zero: bool = False, log_y: bool = False) -> str:
    """An `<svg>` element drawing each series as a polyline (non-finite points are skipped).

    `log_y` puts y on a log10 axis: the way to show a baseline whose error grows a
    hundredfold beside a model whose error stays small.
    """
    series = _log_series(series) if log_y else list(series)
    xs, ys = _finite(series)
    xt = nice_ticks(min(xs), max(xs))
    yt = log_ticks(min(ys), max(ys)) if log_y else nice_ticks(0.0 if y_from_zero else min(ys), max(ys))
    pw, ph = width - MARGIN["left"] - MARGIN["right"], height - MARGIN["top"] - MARGIN["bottom"]

    def px(x: float) -> float:
        return MARGIN["left"] + (x - xt[0]) / ((xt[-1] - xt[0]) or 1) * pw

    def py(y: float) -> float:
        return MARGIN["top"] + ph - (y - yt[0]) / ((yt[-1] - yt[0]) or 1) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="14">{html.escape(title)}</text>']
    ylabels = [f"1e{int(t)}" for t in yt] if log_y else [_fmt(t) for t in yt]
    parts += _axes(xt, yt, ylabels, px, py, pw, ph, xlabel, ylabel, width, height)
    for i, s in enumerate(series):
        parts.append(_polyline(s, px, py, PALETTE[i % len(PALETTE)]))
    parts += _legend(series, MARGIN["left"], 36)
    parts.append("</svg>")
    return "\n".join(parts)


def _axes(xt, yt, ylabels, px, py, pw, ph, xlabel, ylabel, width, height) -> list[str]:
    left, bottom = MARGIN["left"], MARGIN["top"] + ph
    out = [f'<line x1="{left}" y1="{bottom}" x2="{left + pw}" y2="{bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{MARGIN["top"]}" x2="{left}" y2="{bottom}" stroke="black"/>']
    for t in xt:
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="black"/>'
                   f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" font-size="11">{_fmt(t)}</text>')
    for t, label in zip(yt, ylabels):
        y = py(t)
        out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{label}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle" font-size="12">'
               f'{html.escape(xlabel)}</text>')
    out.append(f'<text x="14" y="{MARGIN["top"] + ph / 2:.1f}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 14 {MARGIN["top"] + ph / 2:.1f})">{html.escape(ylabel)}</text>')
    return out


def _polyline(s: Series, px, py, color: str) -> str:
    pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(s.xs, s.ys) if math.isfinite(x) and math.isfinite(y))
    dash = ' stroke-dasharray="5,3"' if s.dashed else ""
    return (f'<polyline class="series" data-label="{html.escape(s.label)}" points="{pts}" fill="none" '
            f'stroke="{color}" stroke-width="1.8"{dash}/>')


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    """Entries in one row above the plot, where they never hide a line."""
    out = []
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="5,3"' if s.dashed else ""
        out.append(f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 18:.1f}" y2="{y:.1f}" stroke="{color}" '
                   f'stroke-width="2"{dash}/><text x="{x + 22:.1f}" y="{y + 4:.1f}" font-size="11">'
                   f'{html.escape(s.label)}</text>')
        x += 34 + CHAR_WIDTH * len(s.label)
    return out
