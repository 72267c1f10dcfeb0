"""The resumable training state on disk: written off the critical path, found on resume.

Saving: the loop hands over a snapshot (tensors copied to host memory, which is
fast) and goes on training while a background thread writes it with
`save_torch` (temp + fsync + rename). Only after the file is durable is the
status told about it, and only then are older states pruned. One write is in
flight at a time; a new save first waits for the previous one.

Loading: the newest state file that loads, belongs to the stage and carries
the current fingerprint wins. The one the status names is checked against its
recorded digest; a newer one (the run died between the rename and the status
update) is a fully committed file too, so it is used.
"""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ups.errors import CheckpointError, one_line
from ups.resume.atomic import bytes_digest
from ups.resume.files import STATE_FORMAT, load_torch, save_torch
from ups.resume.layout import parse_state_step, state_file_name
from ups.resume.policy import states_to_prune
from ups.resume.tracker import utc_now

OnCommitted = Callable[[dict[str, Any]], None]


def snapshot(tree: Any) -> Any:
    """Deep copy of a state tree with every tensor copied to CPU memory."""
    if isinstance(tree, torch.Tensor):
        return tree.detach().to("cpu", copy=True)
    if isinstance(tree, dict):
        return {k: snapshot(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(snapshot(v) for v in tree)
    return tree


class SnapshotBuffers:
    """Host buffers that a state is copied into, kept from one save to the next.

    Copying into memory that already exists is several times faster than
    allocating it afresh (no page faults), and the copy is the only part of a
    save the training thread waits for. One write is in flight at a time, so
    one set of buffers suffices: the next save waits for the write first.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def copy(self, tree: Any, path: tuple = ()) -> Any:
        if isinstance(tree, torch.Tensor):
            return self._copy_tensor(tree, path)
        if isinstance(tree, dict):
            return {k: self.copy(v, path + (k,)) for k, v in tree.items()}
        if isinstance(tree, (list, tuple)):
            return type(tree)(self.copy(v, path + (i,)) for i, v in enumerate(tree))
        return tree

    def _copy_tensor(self, t: torch.Tensor, path: tuple) -> torch.Tensor:
        buf = self._buffers.get(path)
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype:
            buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=t.is_cuda)
            self._buffers[path] = buf
        buf.copy_(t.detach(), non_blocking=t.is_cuda)
        return buf


class StateSaver:
    """Writes `state/<stage>/step-N.pt` files; keeps the newest `keep`."""

    def __init__(self, state_dir: Path, on_committed: OnCommitted, keep: int = 2, background: bool = True):
        self.state_dir = Path(state_dir)
        self.on_committed = on_committed
        self.keep = keep
        self.background = background
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._buffers = SnapshotBuffers()

    def save(self, state: dict[str, Any], *, wait: bool = False) -> None:
        """Snapshot `state` now; write it in the background (or at once if `wait`)."""
        self.wait()
        snap = self._buffers.copy(state)
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the non-blocking device-to-host copies have landed
        if wait or not self.background:
            self._write(snap)
            self._raise_pending()
            return
        self._thread = threading.Thread(target=self._write, args=(snap,), name="ups-state-writer", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the write in flight (if any) is committed; re-raise its error."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._raise_pending()

    def _raise_pending(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            if isinstance(err, KeyboardInterrupt):  # a second Ctrl-C during the save: a stop, not a failure
                raise err
            raise CheckpointError(f"saving the training state failed: {err}") from err

    def _write(self, snap: dict[str, Any]) -> None:
        try:
            step = int(snap["step"])
            path = self.state_dir / state_file_name(step)
            digest = save_torch(snap, path)
            record = {"file": f"{self.state_dir.name}/{path.name}", "step": step, "epoch": snap["epoch"],
                      **digest, "saved_at": utc_now()}
            self.on_committed(record)
            self._prune(protect=step)
        except BaseException as e:  # surfaced on the training thread by wait()
            self._error = e

    def _prune(self, protect: int) -> None:
        for step in states_to_prune(list_state_steps(self.state_dir), self.keep, protect):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / state_file_name(step)).unlink()

    def clear(self) -> None:
        """Remove every state file of this stage (after it completed, or on a fresh start)."""
        self.wait()
        for step in list_state_steps(self.state_dir):
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / state_file_name(step)).unlink()


class NullSaver:
    """What a rank other than 0 of a torchrun group holds instead: rank 0 alone writes states."""

    def save(self, state: dict[str, Any], *, wait: bool = False) -> None:
        pass

    def wait(self) -> None:
        pass

    def clear(self) -> None:
        pass


def list_state_steps(state_dir: Path) -> list[int]:
    if not state_dir.is_dir():
        return []
    steps = (parse_state_step(p.name) for p in state_dir.iterdir())
    return sorted(s for s in steps if s is not None)


def load_verified_state(path: Path, expected: Optional[dict[str, Any]]) -> dict[str, Any]:
    """Load a state file; when `expected` holds a recorded sha256, check the bytes first."""
    if expected and expected.get("sha256"):
        data = path.read_bytes()
        if bytes_digest(data)["sha256"] != expected["sha256"]:
            raise CheckpointError(f"{path} does not match its recorded sha256 (altered or corrupt)")
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"cannot read {path}: {e}") from e
    return load_torch(path)


SET_ASIDE_SUFFIX = ".set-aside"  # a state that failed to load or restore, kept for inspection


def find_resume_state(
    state_dir: Path, stage: str, fingerprint: str, recorded: Optional[dict[str, Any]], log: Callable[[str], None],
    check: Optional[Callable[[dict[str, Any]], Optional[str]]] = None,
) -> Optional[dict[str, Any]]:
    """The newest usable state of `stage` for `fingerprint`, or None (reasons are logged).

    A state that does not load, or that `check` says would not restore, is set aside
    (renamed `step-N.pt.set-aside`, so no later resume tries it again) and the next
    older one is tried.
    """
    recorded_step = (recorded or {}).get("step")
    for step in reversed(list_state_steps(state_dir)):
        path = state_dir / state_file_name(step)
        try:
            state = load_verified_state(path, recorded if step == recorded_step else None)
        except CheckpointError as e:
            _set_aside(path, str(e), log)
            continue
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("stage") != stage:
            log(f"  ignoring {path.name}: not a {stage} training state")
            continue
        if state.get("fingerprint") != fingerprint:
            log(f"  ignoring {path.name}: saved for a different config or upstream")
            continue
        problem = check(state) if check is not None else None
        if problem:
            _set_aside(path, problem, log)
            continue
        return state
    return None


def _set_aside(path: Path, reason: str, log: Callable[[str], None]) -> None:
    reason = one_line(reason) or "unreadable"
    try:
        path.rename(path.with_name(path.name + SET_ASIDE_SUFFIX))
        log(f"  set aside {path.name} (as {path.name}{SET_ASIDE_SUFFIX}): {reason}; trying an older state")
    except OSError:
        log(f"  ignoring {path.name}: {reason}")
