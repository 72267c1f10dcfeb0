"""Where a save's time goes, for the diagnosis under rows 2 and 3 (not a target row).

Measures the pieces the save path is made of on the same state: the snapshot
into fresh tensors (what `StateSaver.save` blocks on) against a copy into
buffers that already exist, the sha256 rate, and a prototype of the proposed
fix for the throughput row (hash in a second thread, overlapping the write),
paired with a reference save run right before it, and a prototype of a
snapshot-free save for the blocking row: fork, and let the child write the
parent's memory copy-on-write. Its price is not blocking but the page copies
the parent's next update of every tensor then pays, measured here as well.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import torch

SNAP_FRESH = "snapshot, fresh buffers (s)"
SNAP_REUSED = "snapshot, copy into reused buffers (s)"
SHA_RATE = "sha256 throughput (GB/s)"
PROTO_RATIO = "prototype (sha256 overlapped in a thread) throughput ÷ torch.save+fsync, one pair"
UNHASHED = "save_torch's path without sha256 (temp, torch.save to a file object, fsync, rename; s)"
FORK_BLOCKED = "fork save: blocked (s)"
FORK_COW = "fork save: extra time of the next full update (copy-on-write, s)"

def copy_into(dst: Any, src: Any) -> None:
    """`copy_` every tensor of `src` into the matching tensor of `dst` (same tree)."""
    for d, t in zip(_tensors(dst), _tensors(src)):
        d.copy_(t)


def largest_tensor_bytes(state: dict) -> memoryview:
    weights = max(state["model"].values(), key=lambda t: t.numel())
    return memoryview(weights.numpy()).cast("B")


def sha256_rate(state: dict) -> float:
    data = largest_tensor_bytes(state)
    start = time.perf_counter()
    for _ in range(4):
        hashlib.sha256(data).digest()
    return 4 * len(data) / (time.perf_counter() - start) / 1e9


class OverlappedHashingWriter:
    """Prototype: hashes each chunk in a helper thread while this thread writes it."""

    def __init__(self, f, pool: ThreadPoolExecutor):
        self._f, self._pool, self._h, self.size = f, pool, hashlib.sha256(), 0

    def write(self, data) -> int:
        pending = self._pool.submit(self._h.update, data)
        n = self._f.write(data)
        pending.result()  # `data` may be a temporary buffer: done with it before returning
        self.size += len(data)
        return n

    def flush(self) -> None:
        self._f.flush()


def prototype_save(state: dict, path: Path) -> float:
    from ups.resume.atomic import atomic_path

    start = time.perf_counter()
    with ThreadPoolExecutor(1) as pool, atomic_path(path) as tmp, open(tmp, "wb") as f:
        writer = OverlappedHashingWriter(f, pool)
        torch.save(state, writer)
        writer.flush()
    seconds = time.perf_counter() - start
    path.unlink()
    return seconds


def unhashed_save(state: dict, path: Path) -> float:
    """save_torch minus the digest: separates the hash's cost from the file-object path's."""
    from ups.resume.atomic import atomic_path

    start = time.perf_counter()
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
    seconds = time.perf_counter() - start
    path.unlink()
    return seconds


def touch(tree: Any) -> float:
    """Write every tensor once, as an optimizer step would; seconds taken."""
    start = time.perf_counter()
    with torch.no_grad():
        for t in _tensors(tree):
            if t.is_floating_point():
                t.add_(0.0)
    return time.perf_counter() - start


def _tensors(tree: Any):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from _tensors(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _tensors(v)


def fork_save(state: dict, path: Path) -> dict[str, float]:
    """Prototype: a forked child writes the state; the parent only pays fork() and, later, copy-on-write."""
    from ups.resume.files import save_torch

    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: write and leave without running the parent's cleanup
        code = 0
        try:
            save_torch(state, path)
        except BaseException:
            code = 1
        os._exit(code)
    blocked = time.perf_counter() - start
    cow_update = touch(state)  # the next step, while the child still shares every page
    _, status = os.waitpid(pid, 0)
    durable = time.perf_counter() - start
    plain_update = touch(state)
    path.unlink(missing_ok=True)
    if status != 0:
        raise RuntimeError("the forked writer failed")
    return {FORK_BLOCKED: blocked, "fork save: durable after (s)": durable, FORK_COW: cow_update - plain_update}


def profile_save_path(state: dict, out: Path, log: Callable[[str], None]) -> dict[str, float]:
    from bench.save_cost import reference_save
    from ups.resume.saver import snapshot

    start = time.perf_counter()
    snap = snapshot(state)
    fresh = time.perf_counter() - start
    start = time.perf_counter()
    copy_into(snap, state)
    reused = time.perf_counter() - start
    del snap
    rate = sha256_rate(state)
    ref, _ = reference_save(state, out / "reference.pt")
    proto = prototype_save(state, out / "prototype.pt")
    unhashed = unhashed_save(state, out / "unhashed.pt")
    forked = fork_save(state, out / "forked.pt")
    log(f"    profile: fork save blocked {forked[FORK_BLOCKED]:.3f} s, next update +{forked[FORK_COW]:.2f} s")
    log(f"    profile: snapshot {fresh:.2f} s fresh / {reused:.2f} s reused buffers; sha256 {rate:.2f} GB/s; "
        f"overlapped-hash prototype {proto:.2f} s, no hash {unhashed:.2f} s vs torch.save+fsync {ref:.2f} s")
    return {
        SNAP_FRESH: fresh,
        SNAP_REUSED: reused,
        SHA_RATE: rate,
        "prototype save_torch with sha256 overlapped in a thread (s)": proto,
        "torch.save+fsync right before the prototype (s)": ref,
        PROTO_RATIO: ref / proto,
        UNHASHED: unhashed,
        **forked,
    }
