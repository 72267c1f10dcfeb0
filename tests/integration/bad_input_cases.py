"""The bad-input catalogue: each case sets up a hostile input, runs one command for real and
reports what came back. `test_bad_input.py` asserts every case; `bench/bad_input_counts.py`
runs the same cases against another checkout (e.g. an older commit) to count the outcomes.

A case's setup gets a `Ctx`: its own directory (the command's working directory, so any stray
relative write lands where it is seen), a tiny config written there, and, when asked, a copy
of one finished tiny run as its checkpoint directory. Most cases fail before training starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import yaml

from tests.helpers import QUICKSTART, TINY, merge

STAGES = ("operator", "diff_residual", "consistency_distill", "steady_prior")
ONLY_OPERATOR = {"stages": {s: {"epochs": 0} for s in STAGES} | {"operator": {"epochs": 1}}}
SCRIPTS = {"train": "train.py", "status": "show_training_status.py", "eval": "evaluate.py",
           "run": "run_fast_to_sota.py", "data": "download_data.py", "launch": "vast_launch.py"}


@dataclass
class Ctx:
    root: Path  # the case's directory and working directory
    shared_data: Path
    reference: Path  # a finished tiny run, copied on request
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ckpt(self) -> Path:
        return self.root / "checkpoints"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    def write_config(self, extra: Optional[dict] = None, raw: Optional[str] = None) -> Path:
        cfg = merge(merge(yaml.safe_load(QUICKSTART.read_text()), TINY), {
            "data": {"root": str(self.shared_data)}, "training": {"checkpoint_dir": str(self.ckpt)},
            "eval": {"output_prefix": str(self.root / "reports" / "eval"), "max_samples": 2, "plot_samples": 0},
        })
        self.config.write_text(raw if raw is not None else yaml.safe_dump(merge(cfg, extra or {}), sort_keys=False))
        return self.config

    def finished(self, extra: Optional[dict] = None) -> Path:
        """A copy of the finished tiny run as this case's checkpoint directory; returns the config."""
        shutil.copytree(self.reference, self.ckpt, symlinks=True)
        return self.write_config(extra)

    def status(self) -> dict:
        return json.loads((self.ckpt / "stage_status.json").read_text())

    def put_status(self, data) -> None:
        text = data if isinstance(data, (str, bytes)) else json.dumps(data)
        path = self.ckpt / "stage_status.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())


Setup = Callable[[Ctx], list[str]]  # returns the command's arguments (after the script)


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # config | checkpoint_dir | status_file | state_files | data | eval | status | launcher | signals
    command: str  # a key of SCRIPTS
    setup: Setup
    exit_code: int
    needle: str  # must appear in the one line
    line_prefix: str = "error: "


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    changed: list[str]  # files outside the checkpoint dir, or completed outputs, that changed


def digests(ctx: Ctx) -> dict[str, str]:
    """sha256 of every file outside the checkpoint dir, and of every completed output inside it."""
    out = {}
    for p in sorted(ctx.root.rglob("*")):
        inside = ctx.ckpt in p.parents
        if inside and not (p.parent == ctx.ckpt and p.suffix == ".pt"):
            continue
        if p.is_file() and not p.is_symlink():
            try:
                out[str(p.relative_to(ctx.root))] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError:
                out[str(p.relative_to(ctx.root))] = "<unreadable>"
    return out


def run_case(case: Case, ctx: Ctx, repo: Path, timeout: float = 300) -> Outcome:
    args = case.setup(ctx)
    before = digests(ctx)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPS_FAULT", "UPS_DEBUG"))}
    paths = [ctx.env.pop("PYTHONPATH_PREFIX", ""), str(repo / "src"), str(repo)]
    env.update({"PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(p for p in paths if p), "OMP_NUM_THREADS": "1",
                "WANDB_MODE": "disabled", **ctx.env})
    proc = subprocess.run([sys.executable, str(repo / "scripts" / SCRIPTS[case.command]), *args], cwd=ctx.root,
                          env=env, capture_output=True, text=True, timeout=timeout, errors="replace")
    after = digests(ctx)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return Outcome(proc.returncode, proc.stdout, proc.stderr, changed)


def error_lines(outcome: Outcome) -> list[str]:
    return [line for line in outcome.stderr.splitlines() if line.strip()]


def classify(case: Case, o: Outcome) -> str:
    """clear | traceback | wrong_exit | unclear | files_changed — the worst first."""
    if "Traceback (most recent call last)" in o.stdout + o.stderr:
        return "traceback"
    if o.changed:
        return "files_changed"
    if o.exit_code != case.exit_code:
        return "wrong_exit"
    lines = error_lines(o)
    if len(lines) != 1 or not lines[0].startswith(case.line_prefix) or case.needle not in lines[0]:
        return "unclear"
    return "clear"


# --- setups ----------------------------------------------------------------------------


def train_args(*extra: str) -> Setup:
    def setup(ctx: Ctx) -> list[str]:
        ctx.write_config(ONLY_OPERATOR)
        return ["--config", str(ctx.config), *extra]
    return setup


def with_config(extra: Optional[dict] = None, raw: Optional[str | bytes] = None, *args: str) -> Setup:
    def setup(ctx: Ctx) -> list[str]:
        if isinstance(raw, bytes):
            ctx.config.write_bytes(raw)
        else:
            ctx.write_config(merge(ONLY_OPERATOR, extra or {}), raw=raw)
        return ["--config", str(ctx.config), *args]
    return setup


def finished(change: Callable[[Ctx], None], *args: str, extra: Optional[dict] = None) -> Setup:
    """The finished run, altered by `change`, resumed with --auto-resume (or `args`)."""
    def setup(ctx: Ctx) -> list[str]:
        ctx.finished(extra)
        change(ctx)
        return ["--config", str(ctx.config), *(args or ("--stage", "all", "--auto-resume"))]
    return setup


def status_of(change: Callable[[Ctx], None], *args: str) -> Setup:
    def setup(ctx: Ctx) -> list[str]:
        ctx.finished()
        change(ctx)
        return [str(ctx.ckpt), *args]
    return setup


def eval_of(change: Callable[[Ctx], Optional[str]], *args: str, extra: Optional[dict] = None) -> Setup:
    """Evaluate the finished run's operator (or the path `change` returns)."""
    def setup(ctx: Ctx) -> list[str]:
        ctx.finished(extra)
        operator = change(ctx) or str(ctx.ckpt / "operator_ema.pt")
        return ["--operator", operator, "--config", str(ctx.config), "--device", "cpu", *args]
    return setup


def replace_dir_with_file(rel: str) -> Callable[[Ctx], None]:
    def change(ctx: Ctx) -> None:
        target = ctx.ckpt / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        target.write_text("not a directory\n")
    return change


def replace_file_with_dir(rel: str) -> Callable[[Ctx], None]:
    def change(ctx: Ctx) -> None:
        target = ctx.ckpt / rel
        target.unlink(missing_ok=True)
        target.mkdir()
    return change


def edit_status(edit: Callable[[dict], object]) -> Callable[[Ctx], None]:
    def change(ctx: Ctx) -> None:
        data = ctx.status()
        result = edit(data)
        ctx.put_status(data if result is None else result)
    return change


def write_bytes(rel: str, data: bytes) -> Callable[[Ctx], None]:
    def change(ctx: Ctx) -> None:
        (ctx.ckpt / rel).write_bytes(data)
    return change


def exploit(ctx: Ctx) -> str:
    """A .pt that runs code when unpickled without weights_only."""
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {ctx.root / 'pwned'}",))

    path = ctx.root / "evil.pt"
    import torch

    torch.save({"format": "ups.stage_output/1", "x": Boom()}, path, pickle_module=pickle)
    return str(path)


def nan_weights(ctx: Ctx) -> str:
    import torch

    src = ctx.ckpt / "operator_ema.pt"
    obj = torch.load(src, weights_only=True)
    for t in obj["state_dict"].values():
        if t.is_floating_point():
            t.fill_(float("nan"))
    path = ctx.root / "nan_operator.pt"
    torch.save(obj, path)
    return str(path)


def nan_data(ctx: Ctx) -> list[str]:
    """A copy of the training split with one NaN, and latent.normalize off (so nothing masks it)."""
    import h5py

    src = ctx.shared_data / "burgers1d_train.h5"
    data_dir = ctx.root / "nan-data"
    data_dir.mkdir()
    for split in ("train", "val", "test"):
        shutil.copy(ctx.shared_data / f"burgers1d_{split}.h5", data_dir / f"burgers1d_{split}.h5")
    with h5py.File(data_dir / src.name, "r+") as f:
        key = "tensor" if "tensor" in f else next(iter(f))
        f[key][0, 0, 0] = float("nan")
    ctx.write_config(merge(ONLY_OPERATOR, {"data": {"root": str(data_dir)}, "latent": {"normalize": False}}))
    return ["--config", str(ctx.config), "--stage", "all"]


def hold_lock(ctx: Ctx) -> list[str]:
    """Another live trainer: a process holding the directory's lock until the case ends."""
    ctx.write_config(ONLY_OPERATOR)
    ctx.ckpt.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ups.resume.lock import CheckpointDirLock; "
         f"CheckpointDirLock({str(ctx.ckpt)!r}).acquire(); print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    HOLDERS.append(holder)
    return ["--config", str(ctx.config), "--stage", "all"]


HOLDERS: list[subprocess.Popen] = []


def release_holders() -> None:
    while HOLDERS:
        p = HOLDERS.pop()
        p.kill()
        p.wait()


def fake_missing_vastai(ctx: Ctx) -> list[str]:
    """The README's install has no `vastai`: a stand-in module that is not there."""
    shim = ctx.root / "no-vastai"
    shim.mkdir()
    (shim / "vastai").mkdir()
    (shim / "vastai" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'vastai'\", name='vastai')\n")
    ctx.env["PYTHONPATH_PREFIX"] = str(shim)
    ctx.write_config()
    return ["launch", "--config", str(ctx.config), "--gpu-name", "RTX_4090", "--dry-run", *REPO_URL,
            "--onstart-out", str(ctx.root / "onstart.sh")]


REPO_URL = ("--repo-url", "https://example.invalid/ups.git")  # a dry run never clones it


def launch_args(*args: str) -> Setup:
    def setup(ctx: Ctx) -> list[str]:
        ctx.write_config()
        return ["launch", "--config", str(ctx.config), *args, "--dry-run", *REPO_URL,
                "--onstart-out", str(ctx.root / "o.sh")]
    return setup


def status_dir(make: Callable[[Ctx], Path], *args: str) -> Setup:
    def setup(ctx: Ctx) -> list[str]:
        return [str(make(ctx)), *args]
    return setup


def _seed_schema_details(data: dict) -> None:
    data["details"] = {"operator": ["not", "a", "mapping"]}


def _long(ctx: Ctx) -> Path:
    return ctx.root / ("x" * 300)


def _unlink(rel: str) -> Callable[[Ctx], None]:
    return lambda ctx: (ctx.ckpt / rel).unlink()


def _symlink_lock(ctx: Ctx) -> None:
    victim = ctx.root / "precious.txt"
    victim.write_text("keep me\n")
    (ctx.ckpt / ".train.lock").unlink(missing_ok=True)
    os.symlink(victim, ctx.ckpt / ".train.lock")


def _hardlink_lock(ctx: Ctx) -> None:
    victim = ctx.root / "precious.txt"
    victim.write_text("keep me\n")
    (ctx.ckpt / ".train.lock").unlink(missing_ok=True)
    os.link(victim, ctx.ckpt / ".train.lock")


def _full_metrics(ctx: Ctx) -> None:
    """metrics.jsonl pointing at a device (/dev/full): reading it never ends, writing fails."""
    (ctx.ckpt / "metrics.jsonl").unlink(missing_ok=True)
    os.symlink("/dev/full", ctx.ckpt / "metrics.jsonl")


def _retrain_operator(ctx: Ctx) -> None:
    """Make the operator's outputs fail verification so --auto-resume has to train it."""
    (ctx.ckpt / "operator_ema.pt").unlink()


def _state_dir_file(ctx: Ctx) -> None:
    _retrain_operator(ctx)
    shutil.rmtree(ctx.ckpt / "state")
    (ctx.ckpt / "state").write_text("not a directory\n")


def _stage(status: str) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data["stages"]["operator"]["status"] = status
    return edit


def _set(path: str, value) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        node = data
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return edit


def _file(ctx: Ctx) -> Path:
    p = ctx.root / "a-file"
    p.write_text("x\n")
    return p


def _no_status(ctx: Ctx) -> Path:
    (ctx.root / "empty").mkdir()
    return ctx.root / "empty"


CASES: list[Case] = [
    # --- config ---------------------------------------------------------------------
    Case("config-missing", "config", "train", lambda c: ["--config", str(c.root / "nope.yaml")], 2, "nope.yaml"),
    Case("config-is-a-directory", "config", "train", lambda c: ["--config", str(c.root)], 2, "is a directory"),
    Case("config-binary", "config", "train", with_config(raw=b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01"), 2, "not UTF-8"),
    Case("config-utf16", "config", "train", with_config(raw="training:\n  seed: 1\n".encode("utf-16")), 2, "not UTF-8"),
    Case("config-bad-yaml", "config", "train", with_config(raw="training: [1, 2\n"), 2, "not valid YAML"),
    Case("config-top-level-list", "config", "train", with_config(raw="- 1\n- 2\n"), 2, "top level must be a mapping"),
    Case("config-unknown-key", "config", "train", train_args("--set", "training.batch_sise=3"), 2, "batch_sise"),
    Case("config-negative-epochs", "config", "train", train_args("--set", "stages.operator.epochs=-3"), 2,
         "stages.operator.epochs"),
    Case("config-inf-lr", "config", "train", train_args("--set", "training.learning_rate=.inf"), 2,
         "training.learning_rate"),
    Case("config-nan-lr", "config", "train", train_args("--set", "stages.operator.lr=.nan"), 2, "stages.operator.lr"),
    Case("config-zero-lr", "config", "train", train_args("--set", "stages.operator.lr=0"), 2, "stages.operator.lr"),
    Case("config-batch-not-int", "config", "train", train_args("--set", "training.batch_size=lots"), 2,
         "training.batch_size"),
    Case("config-override-no-equals", "config", "train", train_args("--set", "training.seed"), 2, "section.key=value"),
    Case("config-override-into-value", "config", "train", train_args("--set", "training.seed.x=1"), 2,
         "is not a section"),
    Case("config-dims-disagree", "config", "train", train_args("--set", "diffusion.latent_dim=7"), 2, "latent.dim"),
    Case("config-inf-every-seconds", "config", "train", train_args("--set", "checkpoint.every_seconds=.inf"), 2,
         "checkpoint.every_seconds"),
    # Far beyond any address space (2^23 x 2^24 floats), so it fails to allocate even where memory is overcommitted.
    Case("config-model-too-large", "config", "train", train_args("--set", "operator.pdet.hidden_dim=8388608"), 1,
         "out of memory"),
    Case("flag-device-potato", "config", "train", train_args("--device", "potato"), 2, "potato"),
    Case("flag-unknown-stage", "config", "train", train_args("--stage", "everything"), 2, "--stage"),
    Case("flag-missing-config", "config", "train", lambda c: ["--stage", "all"], 2, "--config"),
    Case("flag-unknown", "config", "train", train_args("--frobnicate"), 2, "--frobnicate"),
    Case("flag-resume-mode", "config", "train", train_args("--resume-mode", "maybe"), 2, "--resume-mode"),
    Case("flag-two-resume-sources", "config", "train",
         train_args("--resume-from", "file:///tmp/x", "--resume-from-wandb", "abc"), 2, "not both"),
    Case("flag-bad-wandb-id", "config", "train", train_args("--resume-from-wandb", "a/b;rm"), 2, "not a valid W&B run"),
    Case("flag-remote-with-password", "config", "train",
         train_args("--checkpoint-remote", "s3://me:hunter2@bucket/run"), 2, "no credentials"),
    Case("run-unbalanced-quote", "config", "run",
         lambda c: ["--train-config", str(c.write_config(ONLY_OPERATOR)), "--train-extra-arg=--set 'a=1"], 2,
         "--train-extra-arg"),
    Case("run-missing-config", "config", "run", lambda c: ["--train-config", str(c.root / "nope.yaml")], 2,
         "nope.yaml"),
    # --- checkpoint directory -------------------------------------------------------------
    Case("ckpt-dir-is-a-file", "checkpoint_dir", "train",
         lambda c: (c.write_config(merge(ONLY_OPERATOR, {"training": {"checkpoint_dir": str(_file(c))}})),
                    ["--config", str(c.config)])[1], 2, "a-file"),
    Case("ckpt-dir-name-too-long", "checkpoint_dir", "train",
         lambda c: (c.write_config(merge(ONLY_OPERATOR, {"training": {"checkpoint_dir": str(_long(c))}})),
                    ["--config", str(c.config)])[1], 2, "too long"),
    Case("ckpt-dir-under-a-file", "checkpoint_dir", "train",
         lambda c: (c.write_config(merge(ONLY_OPERATOR, {"training": {"checkpoint_dir": str(_file(c) / "ck")}})),
                    ["--config", str(c.config)])[1], 2, "a-file"),
    Case("lock-is-a-symlink", "checkpoint_dir", "train", finished(_symlink_lock), 2, ".train.lock"),
    Case("lock-is-a-hard-link", "checkpoint_dir", "train", finished(_hardlink_lock), 2, ".train.lock"),
    Case("lock-is-a-directory", "checkpoint_dir", "train", finished(replace_file_with_dir(".train.lock")), 2,
         ".train.lock"),
    Case("lock-held", "checkpoint_dir", "train", hold_lock, 3, "in use by another trainer"),
    Case("metrics-is-a-directory", "checkpoint_dir", "train",
         finished(lambda c: (_retrain_operator(c), replace_file_with_dir("metrics.jsonl")(c))), 2, "metrics.jsonl"),
    Case("metadata-is-a-directory", "checkpoint_dir", "train", finished(replace_file_with_dir("metadata.json")), 2,
         "metadata.json"),
    Case("state-dir-is-a-file", "checkpoint_dir", "train", finished(_state_dir_file), 2, "state"),
    Case("metrics-is-a-device-link", "checkpoint_dir", "train",
         finished(lambda c: (_retrain_operator(c), _full_metrics(c))), 2, "metrics.jsonl is a symlink"),
    Case("remote-is-the-checkpoint-dir", "checkpoint_dir", "train",
         lambda c: (c.finished(), ["--config", str(c.config), "--auto-resume", "--checkpoint-remote", str(c.ckpt)])[1],
         2, "checkpoint directory itself"),
    Case("remote-holds-another-run", "checkpoint_dir", "train",
         lambda c: (shutil.copytree(c.reference, c.root / "remote"), c.write_config(ONLY_OPERATOR),
                    ["--config", str(c.config), "--checkpoint-remote", f"file://{c.root / 'remote'}"])[2],
         2, "holds another run"),
    # --- status file ----------------------------------------------------------------------
    Case("status-not-json", "status_file", "train", finished(lambda c: c.put_status("{ nope")), 2, "not valid JSON"),
    Case("status-empty", "status_file", "train", finished(lambda c: c.put_status("")), 2, "stage_status.json"),
    Case("status-not-utf8", "status_file", "train", finished(lambda c: c.put_status(b"\xff\xfe{}")), 2,
         "stage_status.json"),
    Case("status-a-list", "status_file", "train", finished(lambda c: c.put_status("[1, 2]")), 2, "'stages'"),
    Case("status-schema-99", "status_file", "train", finished(edit_status(_set("schema_version", 99))), 2,
         "schema_version"),
    Case("status-unknown-stage-status", "status_file", "train", finished(edit_status(_stage("done-ish"))), 2,
         "stages.operator.status"),
    Case("status-stage-entry-a-string", "status_file", "train",
         finished(edit_status(_set("stages.operator", "completed"))), 2, "stages.operator"),
    Case("status-details-a-list", "status_file", "train", finished(edit_status(_set("details", [1]))), 2, "details"),
    Case("status-details-entry-a-list", "status_file", "train", finished(edit_status(_seed_schema_details)), 2,
         "details.operator"),
    Case("status-outputs-a-string", "status_file", "train",
         finished(edit_status(_set("details.operator.outputs", "operator.pt"))), 2, "details.operator.outputs"),
    Case("status-step-a-string", "status_file", "train",
         finished(edit_status(_set("details.operator.step", "many"))), 2, "details.operator.step"),
    Case("status-is-a-directory", "status_file", "train", finished(replace_file_with_dir("stage_status.json")), 2,
         "stage_status.json"),
    # --- state files and outputs --------------------------------------------------------------
    Case("upstream-output-missing", "state_files", "train",
         finished(_unlink("operator_ema.pt"), "--stage", "diff_residual", "--auto-resume"), 2, "operator"),
    Case("output-is-a-pickle-bomb", "state_files", "eval", eval_of(exploit), 2, "refused to load"),
    Case("output-truncated", "state_files", "eval",
         eval_of(lambda c: (c.root / "half.pt").write_bytes((c.ckpt / "operator_ema.pt").read_bytes()[:5000])
                 and str(c.root / "half.pt")), 2, "half.pt"),
    Case("output-of-another-stage", "state_files", "eval",
         eval_of(lambda c: str(c.ckpt / "steady_prior.pt")), 2, "steady_prior"),
    Case("output-architecture-mismatch", "state_files", "eval", eval_of(lambda c: None, extra={
        "operator": {"pdet": {"hidden_dim": 32}}}), 2, "Architecture mismatch"),
    # --- data ----------------------------------------------------------------------------------
    Case("data-file-missing", "data", "train",
         with_config({"data": {"generate": False, "files": {"train": "/nonexistent/x.h5"}}}), 2, "data.files.train"),
    Case("data-file-garbage", "data", "train",
         lambda c: ((c.root / "junk.h5").write_bytes(b"junk" * 100),
                    with_config({"data": {"generate": False, "files": {"train": str(c.root / "junk.h5")}}})(c))[1],
         2, "junk.h5"),
    Case("data-file-is-a-directory", "data", "train",
         with_config({"data": {"generate": False, "files": {"train": "/tmp"}}}), 2, "/tmp"),
    Case("data-root-under-a-file", "data", "data",
         lambda c: (c.write_config({"data": {"root": str(_file(c) / "d")}}),
                    ["--dataset", "burgers", "--split", "train", "--generate", "--config", str(c.config)])[1],
         2, "a-file"),
    Case("data-output-name-too-long", "data", "data",
         lambda c: ["--dataset", "burgers", "--split", "train", "--generate", "--output", str(_long(c) / "x.h5")],
         2, "too long"),
    Case("data-url-missing-file", "data", "data",
         lambda c: ["--dataset", "burgers", "--split", "train", "--url", f"file://{c.root}/none.h5",
                    "--output", str(c.root / "o.h5")], 2, "none.h5"),
    Case("data-nan-no-normalize", "data", "train", nan_data, 1, "non-finite"),
    # --- evaluation ------------------------------------------------------------------------------
    Case("eval-operator-missing", "eval", "eval", eval_of(lambda c: str(c.root / "none.pt")), 2, "none.pt"),
    Case("eval-operator-is-a-directory", "eval", "eval", eval_of(lambda c: str(c.root)), 2, "checkpoint not found"),
    Case("eval-nan-weights", "eval", "eval", eval_of(nan_weights), 2, "NaN"),
    Case("eval-output-under-a-file", "eval", "eval",
         lambda c: eval_of(lambda c: None)(c) + ["--output-prefix", str(_file(c) / "report")], 2, "a-file"),
    Case("eval-device-potato", "eval", "eval", eval_of(lambda c: None, "--device", "potato"), 2, "potato"),
    Case("eval-config-binary", "eval", "eval",
         lambda c: (c.finished(), c.config.write_bytes(b"\xff\xfe\x00"),
                    ["--operator", str(c.ckpt / "operator_ema.pt"), "--config", str(c.config)])[2], 2, "not UTF-8"),
    # --- status ------------------------------------------------------------------------------------
    Case("status-no-such-dir", "status", "status", status_dir(lambda c: c.root / "nowhere"), 2, "not found"),
    Case("status-dir-is-a-file", "status", "status", status_dir(_file), 2, "a-file"),
    Case("status-no-status-file", "status", "status", status_dir(_no_status), 2, "stage_status.json"),
    Case("status-corrupt", "status", "status", status_of(lambda c: c.put_status("{")), 2, "stage_status.json"),
    Case("dashboard-details-entry-a-list", "status", "status", status_of(edit_status(_seed_schema_details)), 2,
         "details.operator"),
    Case("status-rebuild-remote", "status", "status", lambda c: ["file:///nonexistent/run", "--rebuild"], 2,
         "not found"),
    Case("status-bad-protocol", "status", "status", lambda c: ["nope://x/y"], 2, "nope://"),
    Case("status-bad-verify", "status", "status", status_of(lambda c: None, "--verify", "md5"), 2, "--verify"),
    # --- launcher dry-run ----------------------------------------------------------------------------
    Case("launch-without-vastai", "launcher", "launch", fake_missing_vastai, 2, "pip install -e '.[launch]'"),
    Case("launch-bad-branch", "launcher", "launch", launch_args("--branch", "main; rm -rf /"), 2, "--branch"),
    Case("launch-remote-with-password", "launcher", "launch",
         launch_args("--checkpoint-remote", "s3://me:pw@bucket/run"), 2, "no credentials"),
    Case("launch-env-assignment", "launcher", "launch", launch_args("--env", "WANDB_API_KEY=secret"), 2, "--env"),
    Case("launch-bid-without-interruptible", "launcher", "launch", launch_args("--bid", "0.3"), 2, "--bid"),
    Case("launch-unknown-command", "launcher", "launch", lambda c: ["explode"], 2, "explode", line_prefix=""),
    # --- signals -------------------------------------------------------------------------------------
    Case("sigterm-mid-stage", "signals", "train",
         lambda c: (c.env.update(UPS_FAULT="term:after-step:operator:3"), train_args("--stage", "all")(c))[1],
         143, "interrupted at step", line_prefix="interrupted: "),
    Case("double-sigint-mid-stage", "signals", "train",
         lambda c: (c.env.update(UPS_FAULT="int2:after-step:operator:3"), train_args("--stage", "all")(c))[1],
         130, "Ctrl-C", line_prefix="interrupted: "),
]
