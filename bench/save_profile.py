"""Where a save's time goes, for the diagnosis under rows 2 and 3 (not a target row).

Measures the pieces a save is made of, on the same state and independently of
how `ups.resume` currently assembles them: a snapshot into fresh tensors
against a copy into buffers that already exist (what a save can block on);
serialisation without fsync (the disk flush varies by a second from one write
to the next on a shared disk, the CPU part does not) to a path, to a file
object, and through a prototype writer that hashes each chunk in a second
thread while it is written (the alternative to hashing the file back while the
fsync runs, which `save_torch` does); the sha256 rate and the read-back; and a
snapshot-free alternative for the blocking row: fork, and let the child write the parent's memory copy-on-write. Its price is
not blocking but the page copies the parent's next update of every tensor then
pays, measured here as well.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

import torch

SNAP_FRESH = "snapshot, fresh buffers (s)"
SNAP_REUSED = "snapshot, copy into reused buffers (s)"
SHA_RATE = "sha256 throughput (GB/s)"
TO_PATH = "serialise, no fsync: torch.save to a path (s)"
TO_FILE = "serialise, no fsync: torch.save to a file object (s)"
TO_HASHING = "serialise, no fsync: torch.save through a writer that hashes each chunk in a second thread (s)"
READBACK = "read the written file back from the page cache and sha256 it, 1 MiB chunks (s)"
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


def serialise(state: dict, path: Path, wrap: Optional[Callable] = None) -> float:
    """Seconds for torch.save into a file (through `wrap(file)` if given); the fsync after it is not timed,
    but it is done, so the next measurement does not start behind this one's dirty pages."""
    start = time.perf_counter()
    if wrap is None:
        torch.save(state, str(path))
    else:
        with open(path, "wb") as f:
            writer = wrap(f)
            torch.save(state, writer)
            writer.flush()
    seconds = time.perf_counter() - start
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink()
    return seconds


def serialisation_costs(state: dict, path: Path) -> dict[str, float]:
    """Each variant twice, the faster kept: on a shared machine noise only ever adds time."""
    with ThreadPoolExecutor(1) as pool:
        variants = {TO_PATH: None, TO_FILE: lambda f: f, TO_HASHING: lambda f: HashingWriter(f, pool)}
        costs = {name: min(serialise(state, path, wrap) for _ in range(2)) for name, wrap in variants.items()}
    torch.save(state, str(path))
    costs[READBACK] = min(read_back_digest(path) for _ in range(2))
    path.unlink()
    return costs


class HashingWriter:
    """Prototype: hash each large chunk in `pool`'s thread while this thread writes it."""

    def __init__(self, f: Any, pool: ThreadPoolExecutor) -> None:
        self._f, self._pool, self._hash = f, pool, hashlib.sha256()

    def write(self, data: Any) -> int:
        if memoryview(data).nbytes >= 1 << 20:
            hashed = self._pool.submit(self._hash.update, data)
            n = self._f.write(data)
            hashed.result()  # the chunk is valid only during this call
            return n
        self._hash.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def read_back_digest(path: Path) -> float:
    """Seconds to hash a just-written file by reading it back, as a digest computed after the write must."""
    start = time.perf_counter()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return time.perf_counter() - start


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
    from ups.resume.saver import snapshot

    start = time.perf_counter()
    snap = snapshot(state)
    fresh = time.perf_counter() - start
    start = time.perf_counter()
    copy_into(snap, state)
    reused = time.perf_counter() - start
    del snap
    rate = sha256_rate(state)
    costs = serialisation_costs(state, out / "serialised.pt")
    forked = fork_save(state, out / "forked.pt")
    log(f"    profile: fork save blocked {forked[FORK_BLOCKED]:.3f} s, next update +{forked[FORK_COW]:.2f} s")
    log(f"    profile: snapshot {fresh:.2f} s fresh / {reused:.2f} s reused buffers; sha256 {rate:.2f} GB/s; "
        f"serialise without fsync to a path {costs[TO_PATH]:.2f} s, to a file object {costs[TO_FILE]:.2f} s, "
        f"hashing each chunk as it is written {costs[TO_HASHING]:.2f} s; read back + sha256 {costs[READBACK]:.2f} s")
    return {SNAP_FRESH: fresh, SNAP_REUSED: reused, SHA_RATE: rate, **costs, **forked}
