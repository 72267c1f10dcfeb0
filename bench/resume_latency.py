"""Row 4: how long `--auto-resume` takes before it is useful again.

(a) On a completed pipeline every stage is verified and skipped; compared with
the floor of any torch program, `python -c "import torch"`.
(b) Mid-stage: the time from launch to the end of the first resumed step,
compared with `import torch` + `torch.load` of the state it resumes from, and
with the floor of any torch.optim program (the same plus one optimizer, whose
first use imports torch._dynamo). The
end of the first step is observed without any hook: the resumed run is started
with `UPS_FAULT=after-step:operator:<k+1>`, which SIGKILLs it right after that
step, so its wall time is the time to the first resumed step (the kill comes
before any save, so the directory is unchanged and the next repetition resumes
from the same state).
"""

from __future__ import annotations

from bench import goodput, overhead
from bench.common import (PYTHON, Bench, alternate, check_rc, median, median_ratio, newest_state_step, rotate,
                          run_timed, shown, state_path)
from bench.report import Row

IMPORT_TORCH = [PYTHON, "-c", "import torch"]
KILLED = -9
DYNAMO = "import torch._dynamo after it, which torch.optim's first optimizer pulls in (s)"


def timed(b: Bench, cmd: list[str], name: str, expect: int = 0, env: dict | None = None) -> float:
    log = b.work / f"{name}.log"
    log.unlink(missing_ok=True)
    wall, rc = run_timed(cmd, log, env=env)
    check_rc(rc, expect, name, log)
    return wall


def completed_row(b: Bench, reps: int) -> Row:
    ref = goodput.failure_free(b, "pipeline", ())  # the plain quickstart
    cmd = b.train_cmd(ref["ckpt"], ref["sets"], auto_resume=True)

    def resume() -> float:
        wall = timed(b, cmd, "resume_completed")
        skips = (b.work / "resume_completed.log").read_text().count("Skipping")
        if skips != 4:
            raise RuntimeError(f"expected all 4 stages skipped, saw {skips}; see {b.work / 'resume_completed.log'}")
        return wall

    measured, reference = alternate(reps, resume, lambda: timed(b, IMPORT_TORCH, "import_torch"))
    b.log(f"    auto-resume of a completed pipeline {median(measured):.2f} s vs import torch {median(reference):.2f} s")
    return Row(
        key="resume", metric="Resume latency, completed pipeline (--auto-resume, all skipped ÷ import torch)",
        measured=median(measured), reference=median(reference), unit="s", ratio=median_ratio(measured, reference),
        op="<=", target=1.5, commands=[shown(cmd, b.work), shown(IMPORT_TORCH)],
        notes=f"{reps} ABBA pairs; every stage's outputs are re-hashed and verified before it is skipped.",
        miss=completed_miss(b), samples={"measured_s": measured, "reference_s": reference})


def make_midstage_state(b: Bench) -> tuple:
    """A checkpoint dir killed mid-operator: (dir, step of its newest state)."""
    ckpt = b.fresh_dir("midstage")
    kill_at = 30 if b.quick else 110  # quickstart saves every 25 steps: the newest state is 25 / 100
    cmd = b.train_cmd(ckpt)
    timed(b, cmd, "midstage_make", expect=KILLED, env={"UPS_FAULT": f"after-step:operator:{kill_at}"})
    return ckpt, newest_state_step(ckpt, "operator")


def midstage_rows(b: Bench, reps: int) -> list[Row]:
    ckpt, step = make_midstage_state(b)
    overhead.save_cost_of(b, state_path(ckpt, "operator", step))
    cmd = b.train_cmd(ckpt, auto_resume=True)
    env = {"UPS_FAULT": f"after-step:operator:{step + 1}"}
    path = str(state_path(ckpt, "operator", step))
    load_it = f'torch.load("{path}", map_location="cpu", weights_only=True)'
    load = [PYTHON, "-c", f"import torch; {load_it}"]
    floor = [PYTHON, "-c", f"import torch; torch.optim.AdamW([torch.zeros(1)]); {load_it}"]
    res: dict[str, list[float]] = {"resume": [], "load": [], "floor": []}

    def resume() -> None:
        res["resume"].append(timed(b, cmd, "resume_midstage", expect=KILLED, env=env))
        if newest_state_step(ckpt, "operator") != step:
            raise RuntimeError("the resumed run saved a new state before its first step; the measurement is off")

    rotate(reps, [resume, lambda: res["load"].append(timed(b, load, "import_load")),
                  lambda: res["floor"].append(timed(b, floor, "import_optim_load"))])
    measured, reference = res["resume"], res["load"]
    b.cache["first_step_s"] = median(measured)
    b.cache["import_load_s"] = median(reference)
    b.log(f"    first resumed step after {median(measured):.2f} s vs import+load {median(reference):.2f} s "
          f"(import+optimizer+load {median(res['floor']):.2f} s)")
    commands = [f"UPS_FAULT=after-step:operator:{step + 1} {shown(cmd, b.work)}", shown(load, b.work),
                shown(floor, b.work)]
    notes = (f"{reps} rotations; resumes the operator stage from its state at step {step}; the three commands "
             "run in turn in each rotation. ")
    return [
        Row(key="resume",
            metric="Resume latency, mid-stage (launch → first resumed step ÷ import torch + load state)",
            measured=median(measured), reference=median(reference), unit="s", ratio=median_ratio(measured, reference),
            op="<=", target=1.5, commands=commands,
            notes=notes + "Reference: the second command, `import torch` and `torch.load` of the state.",
            miss=latency_miss(b), samples=res),
        Row(key="resume", metric="Resume latency, mid-stage, against the floor of a torch.optim program (first "
                                 "resumed step ÷ import torch + one optimizer + load state)",
            measured=median(measured), reference=median(res["floor"]), unit="s",
            ratio=median_ratio(measured, res["floor"]), op="<=", target=1.5, commands=commands,
            notes=notes + ("Reference: the third command, which also builds one AdamW: torch.optim imports "
                           "torch._dynamo on first use (`add_param_group`, `zero_grad` and `step` all do), so no "
                           "program that trains with torch.optim starts faster than this."),
            samples=res),
    ]


BREAKDOWN = """
import time
t0 = time.perf_counter(); import torch
t1 = time.perf_counter(); import torch._dynamo
t2 = time.perf_counter(); import ups.job, ups.pipeline.runner, ups.training.tasks
t3 = time.perf_counter(); print(t1 - t0, t2 - t1, t3 - t2)
"""


def import_breakdown(b: Bench) -> None:
    """Where a fresh process's start-up goes, timed inside one process (three repetitions, medians)."""
    log = b.work / "import_breakdown.log"
    parts = []
    for _ in range(1 if b.quick else 3):
        log.unlink(missing_ok=True)
        _, rc = run_timed([PYTHON, "-c", BREAKDOWN], log)
        check_rc(rc, 0, "import breakdown", log)
        parts.append([float(x) for x in log.read_text().split()[-3:]])
    names = ("import torch (s)", DYNAMO,
             "import ups' training modules after both (s)")
    for i, name in enumerate(names):
        b.diagnostics[name] = median([p[i] for p in parts])


def completed_miss(b: Bench) -> str:
    ups_s = b.diagnostics.get("import ups' training modules after both (s)", float("nan"))
    return (f"a completed pipeline builds no optimizer, so beyond `import torch` it costs ups' imports "
            f"({ups_s:.2f} s), reading the status, hashing the seven outputs, and two rewrites of metadata.json, "
            "each with a file and a directory fsync even when nothing changed. When "
            "neighbours keep the disk busy those four fsyncs can take tenths of a second, which is why this row "
            "varies from run to run (`python -m bench --only resume` on a quiet machine separates the two). Next "
            "step (runner/metadata): skip the metadata rewrite when its content is unchanged, so a run that only "
            "verifies writes nothing.")


def latency_miss(b: Bench) -> str:
    d = b.diagnostics
    torch_s = d.get("import torch (s)", float("nan"))
    dynamo = d.get(DYNAMO, float("nan"))
    ups_s = d.get("import ups' training modules after both (s)", float("nan"))
    first = b.cache.get("first_step_s", float("nan"))
    rest = first - torch_s - dynamo - ups_s
    without = (first - dynamo) / b.cache.get("import_load_s", float("nan"))
    return (f"start-up is imports, not resume work: import torch {torch_s:.2f} s; the first torch.optim call "
            f"then imports torch._dynamo ({dynamo:.2f} s); ups' own modules (pydantic, h5py, yaml) add "
            f"{ups_s:.2f} s. Everything else — config, status, data, latents, loading the state and the first "
            f"step — is the remaining {rest:.2f} s. Without the torch._dynamo import the ratio would be "
            f"{without:.2f}. Deferring the optimizer until the state is loaded moves that import but cannot remove "
            "it: besides `Optimizer.add_param_group`/`zero_grad`/`state_dict` (wrapped by `torch._disable_dynamo`, "
            "torch/_compile.py, which imports torch._dynamo on the first call), the first `AdamW.step` imports it "
            "unconditionally (`_use_grad_for_differentiable` in torch/optim/optimizer.py calls "
            "`torch._dynamo.graph_break()` around every step, and the functional `adam` is wrapped by "
            "`_disable_dynamo_if_unsupported`), and the first resumed step needs a step. Pre-filling "
            "`_disable_dynamo`'s cache removes the construction-time import and the step still pays it (checked "
            "with an import hook on torch 2.13), so the floor is torch's own: against the floor of any torch.optim "
            "program (import torch + one optimizer + load) the same resume meets the target (next row). The only "
            "way under it is an optimizer step that bypasses torch.optim's wrappers, i.e. a copy of torch "
            "internals in ups — not worth its fragility; asking upstream for a lazy graph break is.")


def measure(b: Bench) -> list[Row]:
    reps = 1 if b.quick else 4
    import_breakdown(b)
    return [completed_row(b, reps), *midstage_rows(b, reps)]
