"""Restart cost where it is paid in the field: the real onstart script, from its start to the first resumed step.

As `tests/integration/test_onstart_trains.py` runs it: a sandbox directory stands
in for `/workspace`, the script clones this working tree from a local git
repository, installs it (`pip install --no-deps --no-index --target`: the
project itself; on a rented machine `pip install -e .[launch]` also fetches its
dependencies, which this machine cannot reach), generates the data and trains,
syncing to a `file://` remote. The first boot is killed mid-operator, the whole
container at once. Then, timed:

- a container restart: the same sandbox boots again (checkout kept, install
  skipped, local state resumed);
- a fresh instance: a new sandbox in resume mode, given only the remote.

Phases come from when each line of the script's output arrives (the script and
the trainer write unbuffered), and the first resumed step from the trainer's
goodput record (process start + start-up): checkout (script start → the
checkout is there), install, data (`download_data.py`), then in `train.py`:
imports (process start → its first line), download (the remote copy, fresh
instance only), plan + data + codec (→ the stage banner), latents + state load
(→ "resumed"), and the optimizer's construction (which imports torch._dynamo),
the restore and the first step.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import yaml

from bench.common import QUICK_SETS, QUICKSTART, REPO, Bench, parse_time
from bench.report import Row
from tests.onstart_sandbox import OnstartSandbox, origin_repo

CONFIG = "configs/bench_onstart.yaml"


def make_origin(b: Bench) -> Path:
    """A git repository holding this working tree and the config an instance trains."""
    from ups.config_yaml import apply_overrides

    sets = [*(QUICK_SETS if b.quick else ()), "data.root=data/bench", "training.checkpoint_dir=checkpoints",
            "training.num_threads=1", "logging.progress=lines", "checkpoint.upload_every_seconds=0",
            "checkpoint.every_steps=10"]
    config = apply_overrides(yaml.safe_load((REPO / QUICKSTART).read_text()), sets)
    return origin_repo(b.fresh_dir("onstart_origin"), CONFIG, config)


class Sandbox(OnstartSandbox):
    def __init__(self, root: Path, origin: Path, remote: Path, resume: bool):
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(root, origin, remote, CONFIG, resume_from_remote=resume)

    def boot(self, until=None, timeout: float = 600) -> tuple[float, list[tuple[float, str]]]:
        """Run the script; (start time, [(arrival time, line)]). `until(lines)` true: kill the container."""
        lines: list[tuple[float, str]] = []
        start = time.time()
        proc = subprocess.Popen(["bash", str(self.script)], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True, text=True)
        reader = threading.Thread(target=lambda: [lines.append((time.time(), ln)) for ln in proc.stdout], daemon=True)
        reader.start()
        deadline = start + timeout
        while proc.poll() is None and time.time() < deadline:
            if until is not None and until():
                break
            time.sleep(0.05)
        with_kill = proc.poll() is None
        if with_kill:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=10)
        if not with_kill and proc.returncode != 0:
            raise RuntimeError(f"onstart exited {proc.returncode}:\n" + "".join(l for _, l in lines[-40:]))
        (self.root / "boot.log").open("a").writelines(l for _, l in lines)
        return start, lines


def has_state(ckpt: Path) -> bool:
    try:
        status = json.loads((ckpt / "stage_status.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(((status.get("details") or {}).get("operator") or {}).get("resume_state"))


def phases(start: float, lines: list[tuple[float, str]], ckpt: Path) -> dict[str, float]:
    """Seconds per phase, from the line arrival times and the trainer's own record of this attempt."""
    def at(needle: str, after: float = 0.0) -> float | None:
        return next((t for t, ln in lines if t >= after and needle in ln), None)

    def next_line(t: float | None) -> float | None:
        return None if t is None else next((u for u, _ in lines if u > t), None)

    record = json.loads((ckpt / "stage_status.json").read_text())["details"]["goodput"]
    attempt = next(a for a in reversed(record["attempts"]) if a.get("resumed"))
    process = parse_time(attempt["started_at"])
    first_step = process + attempt["startup_s"]
    checkout = min(t for t in (at("FRESH START"), at("RESTART"), at("RESUME MODE"), process) if t)
    install_end = next_line(at("Installing the project", checkout))
    train = at("Starting training", checkout) or process
    # The trainer's first line (it prints after its imports); the launch line itself may arrive after the
    # process started, through the script's `tee`.
    imports_end = next((t for t, ln in lines if t > train and "Starting training" not in ln), process)
    download = at("Downloading checkpoints", process)
    download_s = (next_line(download) - download) if download and next_line(download) else 0.0
    opened = at("STAGE 1/4", process) or imports_end
    loaded = at("as resumed", opened) or opened
    out = {"checkout": checkout - start, "install": (install_end - checkout) if install_end else 0.0,
           "data": train - (install_end or checkout), "python start + imports": imports_end - process,
           "download": download_s, "plan + data + codec": max(0.0, opened - imports_end - download_s),
           "latents + state load": loaded - opened,
           "optimizer (imports torch._dynamo) + restore + first step": first_step - loaded}
    out["total"] = first_step - start
    out["trainer"] = attempt["startup_s"]
    return out


def measure(b: Bench) -> list[Row]:
    origin = make_origin(b)
    remote, kept = b.work / "onstart_remote", b.work / "onstart_remote_at_kill"
    shutil.rmtree(remote, ignore_errors=True)
    shutil.rmtree(kept, ignore_errors=True)
    first = Sandbox(b.fresh_dir("onstart_a"), origin, remote, resume=False)
    first.boot(until=lambda: has_state(first.checkpoints) and has_state(remote))  # killed mid-operator
    shutil.copytree(remote, kept)
    start, lines = first.boot()
    restart = phases(start, lines, first.checkpoints)
    fresh = Sandbox(b.fresh_dir("onstart_b"), origin, kept, resume=True)
    start, lines = fresh.boot()
    new = phases(start, lines, fresh.checkpoints)
    rows = []
    for name, p in (("container restart", restart), ("fresh instance", new)):
        split = ", ".join(f"{k} {v:.2f} s" for k, v in p.items() if k not in ("total", "trainer"))
        b.log(f"    {name}: {p['total']:.2f} s to the first resumed step ({split})")
        rows.append(Row(
            key="restart", metric=f"Restart cost, {name}: onstart start → first resumed step ÷ the trainer's own "
                                  "start-up",
            measured=p["total"], reference=p["trainer"], unit="s", ratio=p["total"] / p["trainer"], op="",
            target=None, commands=["python -m bench --only restart"],
            notes=f"Phases: {split}. " + ("The checkout is kept and the install skipped (its marker); "
                                          "download_data verifies the data already there."
                                          if name == "container restart" else
                                          "Clone, install of the project (its dependencies are on this "
                                          "machine already), data generated, the remote copy downloaded "
                                          "and verified."),
            samples=p))
    return rows
