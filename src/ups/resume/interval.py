"""`checkpoint.every_seconds: auto`: a save interval set by what saves cost and how often this run fails.

Young's rule (Young 1974; Daly 2006 refines it) puts the interval that loses the
least time at T = √(2·C·MTBF): C is what one save costs the training thread, MTBF
the mean time between failures. Saving more often pays C too often; less often
loses, on average, T/2 of work per failure. Both inputs come from the run itself:
C is the measured blocking cost of its saves (with background writes: the copy to
host memory, plus any wait for the previous write still in flight, so a disk too
slow for the interval raises C and with it T), MTBF the time its attempts ran
divided by the failures they met. Until `min_failures` failures are seen the MTBF
is the configured prior, and until a save was measured the interval is the
minimum (saving early is what measures C). T is bounded by the configured
minimum and maximum.

These are pure functions: the rule is tested without a clock or a disk, and
`AdaptiveSavePolicy` only asks its `interval` callable what T is now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from ups.resume.policy import SavePolicy


@dataclass(frozen=True)
class IntervalInputs:
    """What the rule is fed: the measured costs, the failures seen, the configured prior and bounds."""

    save_cost_s: Optional[float]  # mean blocking seconds per periodic save; None: none measured yet
    failures: int  # interruptions of this run that count as failures (not a user's Ctrl-C)
    exposure_s: float  # wall time its attempts ran, the time in which those failures happened
    prior_mtbf_s: float
    min_failures: int
    min_s: float
    max_s: float


@dataclass(frozen=True)
class Interval:
    """The interval chosen and why: each input, and which bound (if any) it was clipped to."""

    seconds: float
    mtbf_s: float
    mtbf_from: str  # "prior" or "observed"
    save_cost_s: Optional[float]
    failures: int
    exposure_s: float
    bound: Optional[str]  # "min", "max", or None when the rule itself decided

    def describe(self) -> str:
        """One line for the resume plan: the value and every input it came from."""
        if self.mtbf_from == "observed":
            mtbf = f"MTBF {_dur(self.mtbf_s)} observed ({self.failures} failures in {_dur(self.exposure_s)})"
        else:
            mtbf = (f"MTBF {_dur(self.mtbf_s)} prior ({self.failures} failures seen in {_dur(self.exposure_s)}, "
                    f"too few to estimate)")
        if self.save_cost_s is None:
            return f"checkpoint interval (auto): {_dur(self.seconds)}, the minimum, until a save is measured; {mtbf}"
        raw = young_daly_seconds(self.save_cost_s, self.mtbf_s)
        clipped = f", clipped to the {self.bound}imum" if self.bound else ""
        return (f"checkpoint interval (auto): {_dur(self.seconds)} = √(2 × {self.save_cost_s * 1000:.1f} ms per save "
                f"× {mtbf}) = {_dur(raw)}{clipped}")


def young_daly_seconds(save_cost_s: float, mtbf_s: float) -> float:
    """T = √(2·C·MTBF): the interval that minimises C/T + T/(2·MTBF), the time lost per second run."""
    return math.sqrt(2.0 * max(save_cost_s, 0.0) * max(mtbf_s, 0.0))


def estimate_mtbf(failures: int, exposure_s: float, prior_mtbf_s: float, min_failures: int) -> tuple[float, str]:
    """(MTBF, where it came from): observed once `min_failures` failures are seen, else the prior."""
    if failures >= max(min_failures, 1) and exposure_s > 0:
        return exposure_s / failures, "observed"
    return prior_mtbf_s, "prior"


def auto_interval(inp: IntervalInputs) -> Interval:
    mtbf, source = estimate_mtbf(inp.failures, inp.exposure_s, inp.prior_mtbf_s, inp.min_failures)
    if inp.save_cost_s is None:
        seconds, bound = inp.min_s, "min"
    else:
        raw = young_daly_seconds(inp.save_cost_s, mtbf)
        seconds = min(max(raw, inp.min_s), inp.max_s)
        bound = "min" if raw < inp.min_s else "max" if raw > inp.max_s else None
    return Interval(seconds, mtbf, source, inp.save_cost_s, inp.failures, inp.exposure_s, bound)


def expected_waste(interval_s: float, save_cost_s: float, restart_s: float, mtbf_s: float) -> float:
    """First-order fraction of wall time lost: saves, half an interval redone and a restart per failure."""
    return save_cost_s / interval_s + (interval_s / 2.0 + restart_s) / mtbf_s


def goodput_ceiling(save_cost_s: float, restart_s: float, mtbf_s: float) -> float:
    """The best goodput the first-order model allows for these costs: at T = √(2·C·MTBF)."""
    if save_cost_s <= 0:
        return max(0.0, 1.0 - restart_s / mtbf_s)
    return max(0.0, 1.0 - expected_waste(young_daly_seconds(save_cost_s, mtbf_s), save_cost_s, restart_s, mtbf_s))


@dataclass(frozen=True)
class AdaptiveSavePolicy(SavePolicy):
    """A SavePolicy whose time-based interval is asked for at each step (`interval()` seconds)."""

    interval: Callable[[], float] = lambda: math.inf

    def is_time_due(self, step: int, last_saved_step: int, seconds_since_save: float) -> bool:
        return step > last_saved_step and seconds_since_save >= self.interval()


def _dur(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.3g} s"
