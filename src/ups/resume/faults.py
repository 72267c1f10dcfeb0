"""Named crash points for testing crash consistency (inert unless `UPS_FAULT` is set).

`UPS_FAULT=<point>` makes the process SIGKILL itself the first time it reaches
that point (`<point>#n`: the n-th time), exactly as a power cut or `kill -9` would, so tests can stop a run
*during* a save or *between* two commits deterministically instead of hoping a
random kill lands there. Points: `before-rename:<file name>` (a file fully
written and fsynced, not yet renamed into place), `after-step:<stage>:<step>`,
`after-outputs:<stage>` (outputs durable, status not yet updated),
`after-stage:<stage>` (stage recorded completed, next not started).
`UPS_FAULT=raise:<point>` raises a RuntimeError there instead (a crash the
process survives long enough to record: an OOM, a NaN check, a bug).
"""

from __future__ import annotations

import os
import signal

_POINT, _, _NTH = (os.environ.get("UPS_FAULT") or "").partition("#")
_POINT = _POINT or None
_remaining = int(_NTH or 1)


class InjectedFault(RuntimeError):
    """The exception `UPS_FAULT=raise:<point>` raises."""


def crash_point(name: str) -> None:
    global _remaining
    if _POINT is None or _POINT.removeprefix("raise:") != name:
        return
    _remaining -= 1
    if _remaining > 0:
        return
    if name == _POINT:
        print(f"[fault injection] SIGKILL at {name}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    if _POINT == f"raise:{name}":
        raise InjectedFault(f"injected failure at {name}")
