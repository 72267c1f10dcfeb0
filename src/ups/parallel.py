"""One process of a torchrun group (DDP), or the only process: what the runner and the loop ask of it.

`torchrun --nproc-per-node N scripts/train.py ...` starts N copies of the same
pipeline with RANK / WORLD_SIZE / LOCAL_RANK set. This module is the one place
that knows there may be several; `Solo` (no torchrun, or one process) makes
every helper the identity, so a single process trains exactly as it always did.
The choices, which the README's "Scaling" section states for users:

- **Rank 0 alone touches `checkpoint_dir`.** It takes the lock, reads the status,
  decides each stage, writes status, metadata, metrics, states and outputs, and
  runs the hooks (uploads). What the other ranks need from that directory — each
  stage's decision, the verified resume state, the upstream stage outputs — rank 0
  reads and broadcasts (`rank0_shares`): every rank loads the same verified bytes,
  no rank reads a file another is writing, and the directory need only exist on
  rank 0's node.
- **`batch_size` is the global batch.** Step (epoch e, batch b) takes the same
  items of epoch e's seeded permutation as a single process does; rank r trains
  on the r-th of N equal slices (`shard`) and DDP averages the gradients. The
  position (epoch, batch) therefore means the same for any N, and a state saved
  by N processes continues under M with the same data order (`world_change_notice`).
- **Stop agreement without a device sync.** After every step each rank puts its
  stop signal (and rank 0 its save-by-time request) into a 2-integer CPU tensor,
  all-reduced with MAX on a separate gloo group, started asynchronously and read
  one step later: it never touches the GPU stream, its latency hides behind a
  step, and every rank acts on the same flags at the same step.
- **No rank waits forever.** Every collective has a timeout
  (`UPS_DIST_TIMEOUT_SECONDS`, default 1800: rank 0 may be downloading a
  checkpoint while the others wait). An error in a rank-0 section is broadcast,
  so every rank stops with rank 0's reason and exit code. A rank that dies closes
  its sockets, so the others fail at their next collective with `lost_peer`'s
  message; torchrun's agent stops the rest of the group and, with
  `--max-restarts`, starts it again (`restart_count` > 0 implies --auto-resume).
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ups.errors import ConfigError, DistributedError, UpsError, one_line
from ups.resume.rng import seed_everything
from ups.resume.saver import snapshot
from ups.resume.signals import TrainingInterrupted

T = TypeVar("T")
TIMEOUT_ENV = "UPS_DIST_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_S = 1800.0
RESTART_ENV = "TORCHELASTIC_RESTART_COUNT"
FAILURE_KEY = "ups/failed/rank-"  # + rank: in the group's store, a failed rank's error
# Words in the errors gloo and NCCL raise when a peer is gone or silent.
_PEER_LOSS_MARKERS = ("gloo", "nccl", "connection closed", "connection reset", "broken pipe", "timed out",
                      "timeout")


def restart_count() -> int:
    """How many times torchrun has restarted this group (0: the first attempt, or no torchrun)."""
    return int(os.environ.get(RESTART_ENV) or 0)


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE") or 1)


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def world_change_notice(stage: str, step: int, saved: int, now: int, batch_size: int) -> Optional[str]:
    """What to say when a state saved by `saved` processes is continued by `now` of them."""
    if saved == now:
        return None
    return (f"{stage}: the saved state (step {step}) was written by {saved} process(es); continuing with "
            f"{now}. batch_size {batch_size} is the global batch, so the data order and position carry "
            f"over unchanged (each process now takes {batch_size // now} items per step); the noise "
            f"streams of the processes are re-dealt, so the weights will not be bit-identical to an "
            f"uninterrupted {saved}-process run. Resume with {saved} process(es) for that.")


class Solo:
    """The only process: every helper is the identity and nothing is communicated."""

    distributed = False
    rank = 0
    world_size = 1

    def __init__(self, device: torch.device):
        self.device = device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rank0_only(self, fn: Callable[[], T]) -> Optional[T]:
        """Run `fn` on rank 0 only; the others wait for it and stop if it fails."""
        return fn()

    def rank0_shares(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0; every rank gets its result (or stops with its error)."""
        return fn()

    def rank0_first(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0, then (once it succeeded) on every other rank."""
        return fn()

    def quiet(self) -> contextlib.AbstractContextManager:
        """Silence stdout on ranks other than 0 (one copy of every banner and plan)."""
        return contextlib.nullcontext()

    def check_batch(self, stage: str, batch_size: int, n_items: int) -> None:
        pass

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        return idx

    def rank_seed(self, base: int) -> int:
        return base

    def seed_rank(self, seed: int) -> None:
        """Give this rank its own global RNG streams (rank 0 keeps the single-process ones)."""

    def rank_states(self, local: dict[str, Any]) -> dict[str, Any]:
        """Extra entries for the saved state: every rank's own RNG streams (rank 0 only)."""
        return {}

    def own_state(self, state: dict[str, Any]) -> Optional[dict[str, Any]]:
        """This rank's entry of a saved state's per-rank streams, or None: use the top-level ones."""
        return None

    def agree(self, signum: int, asked: int) -> tuple[int, int]:
        """(stop signal, save request) as every rank sees them at this step boundary."""
        return signum, asked

    def agree_now(self, signum: int) -> int:
        return signum

    def drain(self) -> None:
        """Wait for the agreement still in flight (at the end of a stage)."""

    def barrier(self) -> None:
        pass

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def lost_peer(self, error: BaseException, where: str) -> Optional[DistributedError]:
        return None

    def close(self, clean: bool) -> None:
        pass


class Group(Solo):
    """One rank of a torchrun group: DDP on the default group, control messages on a gloo group."""

    distributed = True

    def __init__(self, device: torch.device, rank: int, world_size: int, control: Any, store: Any):
        super().__init__(device)
        self.rank, self.world_size, self.control, self.store = rank, world_size, control, store
        self._pending: Optional[tuple[Any, torch.Tensor]] = None

    @classmethod
    def start(cls, device: torch.device) -> "Group":
        rank, world = int(os.environ.get("RANK") or 0), env_world_size()
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK") or 0))
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = timedelta(seconds=timeout_seconds())
        try:
            store = _open_store(rank, world, timeout)
            dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
            control = dist.new_group(backend="gloo", timeout=timeout)
        except Exception as e:
            raise DistributedError(
                f"rank {rank} of {world}: could not join the torchrun group over {backend} ({one_line(e)}); "
                "check --rdzv-endpoint / MASTER_ADDR:MASTER_PORT and that every node runs the same command"
            ) from e
        return cls(device, rank, world, control, store)

    # --- rank 0's sections ------------------------------------------------

    def rank0_only(self, fn: Callable[[], T]) -> Optional[T]:
        if not self.is_main:
            self._receive()
            return None
        result = self._run_main(fn)
        self._send((True, None))
        return result

    def rank0_shares(self, fn: Callable[[], T]) -> T:
        if not self.is_main:
            return self._receive()
        result = self._run_main(fn)
        self._send((True, result))
        return result

    def rank0_first(self, fn: Callable[[], T]) -> T:
        done: list[T] = []
        self.rank0_only(lambda: done.append(fn()))
        return done[0] if done else fn()

    def _run_main(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except BaseException as e:
            with contextlib.suppress(Exception):  # the others may be gone already
                self._send((False, (one_line(e), int(getattr(e, "exit_code", 1)))))
            raise

    def _receive(self) -> Any:
        ok, payload = self._send(None)
        if ok:
            return payload
        message, code = payload
        raise DistributedError(f"rank {self.rank}: stopping because rank 0 stopped: {message}", exit_code=code)

    def _send(self, message: Any) -> Any:
        box = [message]
        try:
            dist.broadcast_object_list(box, src=0, group=self.control)
        except Exception as e:
            lost = self.lost_peer(e, "while waiting for rank 0")
            if lost is None:
                raise
            raise lost from e
        return box[0]

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        if self.is_main:
            yield
            return
        with open(os.devnull, "w", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
            yield

    # --- training ---------------------------------------------------------

    def check_batch(self, stage: str, batch_size: int, n_items: int) -> None:
        w = self.world_size
        if batch_size % w:
            raise ConfigError(
                f"stage '{stage}': batch_size {batch_size} does not split evenly over {w} processes "
                f"(batch_size is the global batch; each process takes batch_size/{w}). Set training.batch_size "
                f"(or stages.{stage}.batch_size) to a multiple of {w}, e.g. --set training.batch_size="
                f"{batch_size + w - batch_size % w}")
        if min(batch_size, n_items) < w:
            raise ConfigError(f"stage '{stage}': {n_items} training items cannot feed {w} processes; "
                              "use fewer processes or more data")

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        return idx.tensor_split(self.world_size)[self.rank]

    def rank_seed(self, base: int) -> int:
        if self.rank == 0:
            return base
        return (base * 6364136223846793005 + 1442695040888963407 * self.rank) % (1 << 63)

    def seed_rank(self, seed: int) -> None:
        if self.rank:
            seed_everything(self.rank_seed(seed))

    def rank_states(self, local: dict[str, Any]) -> dict[str, Any]:
        gathered: Optional[list[Any]] = [None] * self.world_size if self.is_main else None
        dist.gather_object(snapshot(local), gathered, dst=0, group=self.control)
        return {"world_size": self.world_size, "ranks": gathered} if self.is_main else {}

    def own_state(self, state: dict[str, Any]) -> Optional[dict[str, Any]]:
        ranks = state.get("ranks") or []
        return ranks[self.rank] if self.rank < len(ranks) else None

    def agree(self, signum: int, asked: int) -> tuple[int, int]:
        flags = torch.tensor([signum, asked if self.is_main else 0], dtype=torch.int64)
        work = dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.control, async_op=True)
        previous, self._pending = self._pending, (work, flags)
        if previous is None:
            return 0, 0
        previous[0].wait()
        return int(previous[1][0]), int(previous[1][1])

    def drain(self) -> None:
        if self._pending is not None:
            work, self._pending = self._pending[0], None
            work.wait()

    def agree_now(self, signum: int) -> int:
        self.drain()
        flags = torch.tensor([signum], dtype=torch.int64)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.control)
        return int(flags[0])

    def barrier(self) -> None:
        self.drain()
        dist.barrier(group=self.control)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def lost_peer(self, error: BaseException, where: str) -> Optional[DistributedError]:
        text = str(error).lower()
        if not isinstance(error, dist.DistError) and not any(m in text for m in _PEER_LOSS_MARKERS):
            return None
        causes = "; ".join(f"rank {r} failed with {why}" for r, why in self._peer_failures())
        return DistributedError(
            f"rank {self.rank} of {self.world_size}: lost contact with the other processes {where}: "
            f"{causes or 'another rank failed or was killed (see its log)'}. The last saved state is intact: "
            f"torchrun --max-restarts restarts the group from it, or rerun with --auto-resume. ({one_line(error)})")

    def report_failure(self, error: BaseException) -> None:
        """Leave this rank's error where the others look when they lose it (best effort)."""
        with contextlib.suppress(Exception):
            self.store.set(f"{FAILURE_KEY}{self.rank}", f"{type(error).__name__}: {one_line(error)}")

    def _peer_failures(self) -> list[tuple[int, str]]:
        found = []
        for r in range(self.world_size):
            key = f"{FAILURE_KEY}{r}"
            with contextlib.suppress(Exception):
                if r != self.rank and self.store.check([key]):
                    found.append((r, self.store.get(key).decode(errors="replace")))
        return found

    def close(self, clean: bool) -> None:
        if clean:  # after a peer failure a collective teardown could hang; exiting frees everything
            with contextlib.suppress(Exception):
                self.drain()
            dist.destroy_process_group()


def _open_store(rank: int, world: int, timeout: timedelta) -> dist.Store:
    """The group's key-value store (MASTER_ADDR:MASTER_PORT), kept to report a rank's failure.

    By default torchrun serves one store to every attempt of a group, and the keys
    the failed attempt wrote (each rank's gloo / NCCL address) are still there: a
    restarted rank can read a dead peer's address and fail to connect
    (pytorch/pytorch#135712). Each attempt gets its own key prefix here.
    """
    addr, port = os.environ.get("MASTER_ADDR", "localhost"), int(os.environ.get("MASTER_PORT") or 29500)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True):
        shared = dist.TCPStore(addr, port, is_master=False, timeout=timeout)
        return dist.PrefixStore(f"ups/attempt-{restart_count()}/", shared)
    return dist.TCPStore(addr, port, world, is_master=rank == 0, timeout=timeout, multi_tenant=True)


@contextlib.contextmanager
def join(device: torch.device) -> Iterator[Solo]:
    """The group this process belongs to: a `Group` under torchrun with WORLD_SIZE > 1, else `Solo`."""
    if env_world_size() <= 1:
        yield Solo(device)
        return
    group = Group.start(device)
    try:
        yield group
    except BaseException as e:
        if not isinstance(e, (DistributedError, TrainingInterrupted)):  # not a cause: an effect, or agreed
            group.report_failure(e)
        # Every rank raised an UpsError at the same point (a stop, a config error, rank 0's
        # error broadcast): tear down cleanly. After a lost peer a teardown could hang.
        group.close(clean=isinstance(e, UpsError) and not isinstance(e, DistributedError))
        raise
    group.close(clean=True)


