"""Named crash points for testing crash consistency (inert unless `UPS_FAULT` is set).

`UPS_FAULT=<point>` makes the process SIGKILL itself the first time it reaches
that point (`<point>#n`: the n-th time), exactly as a power cut or `kill -9` would, so tests can stop a run
*during* a save or *between* two commits deterministically instead of hoping a
random kill lands there. Points: `before-rename:<file name>` (a file fully
written and fsynced, not yet renamed into place), `after-step:<stage>:<step>`,
`after-outputs:<stage>` (outputs durable, status not yet updated),
`after-stage:<stage>` (stage recorded completed, next not started).
`UPS_FAULT=raise:<point>` raises a RuntimeError there instead (a crash the
process survives long enough to record: an OOM, a NaN check, a bug);
`UPS_FAULT=term:<point>` sends the process SIGTERM there (a preemption notice
arriving at a known step); `UPS_FAULT=int2:<point>` sends SIGINT twice in a row
(a second Ctrl-C before the first one's save is done).

In a torchrun group every rank that reaches the point fires, unless
`UPS_FAULT_RANK=<r>` names the one rank that should. A fault fires only in the
group's first attempt (`TORCHELASTIC_RESTART_COUNT` unset or 0): the restarted
group inherits the environment, and a one-off crash must not repeat forever.
"""

from __future__ import annotations

import os
import signal

_KINDS = ("raise:", "term:", "int2:")


def _is_armed_here() -> bool:
    """False in a rank other than UPS_FAULT_RANK, and in a restarted torchrun group."""
    rank = os.environ.get("UPS_FAULT_RANK")
    if rank is not None and rank != (os.environ.get("RANK") or "0"):
        return False
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0) == 0


_POINT, _, _NTH = (os.environ.get("UPS_FAULT") or "").partition("#")
_POINT = _POINT if _POINT and _is_armed_here() else None
_remaining = int(_NTH or 1)


class InjectedFault(RuntimeError):
    """The exception `UPS_FAULT=raise:<point>` raises."""


def crash_point(name: str) -> None:
    global _remaining
    if _POINT is None or _bare(_POINT) != name:
        return
    _remaining -= 1
    if _remaining != 0:  # not yet, or already fired (a SIGTERM is survived)
        return
    if name == _POINT:
        print(f"[fault injection] SIGKILL at {name}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    if _POINT == f"raise:{name}":
        raise InjectedFault(f"injected failure at {name}")
    if _POINT == f"term:{name}":
        print(f"[fault injection] SIGTERM at {name}", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
    if _POINT == f"int2:{name}":  # an impatient user: Ctrl-C, and Ctrl-C again at once
        print(f"[fault injection] SIGINT twice at {name}", flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)


def _bare(point: str) -> str:
    for kind in _KINDS:
        if point.startswith(kind):
            return point[len(kind):]
    return point
