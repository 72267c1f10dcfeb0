"""Names on disk: every file name in a checkpoint directory, defined once.

Readers (status dashboard, remote sync, rebuild) and writers (the trainer) agree
on these; nothing else in the project spells a checkpoint file name.
"""

from __future__ import annotations

STATUS_FILE = "stage_status.json"
METADATA_FILE = "metadata.json"
METRICS_FILE = "metrics.jsonl"
STATE_DIR = "state"
SCHEMA_VERSION = 1

STAGE_NAMES = ("operator", "diff_residual", "consistency_distill", "steady_prior")

# Files each stage owns. No stage writes another stage's file.
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "operator": ("operator.pt", "operator_ema.pt"),
    "diff_residual": ("diffusion_residual.pt", "diffusion_residual_ema.pt"),
    "consistency_distill": ("consistency_student.pt", "consistency_student_ema.pt"),
    "steady_prior": ("steady_prior.pt",),
}

# The file a stage's status entry names as its `checkpoint` (the one downstream reads).
STAGE_CHECKPOINT: dict[str, str] = {
    "operator": "operator_ema.pt",
    "diff_residual": "diffusion_residual_ema.pt",
    "consistency_distill": "consistency_student_ema.pt",
    "steady_prior": "steady_prior.pt",
}

ALL_OUTPUT_FILES = tuple(f for files in STAGE_OUTPUTS.values() for f in files)


def state_file_name(step: int) -> str:
    return f"step-{step:09d}.pt"


def parse_state_step(name: str) -> int | None:
    if name.startswith("step-") and name.endswith(".pt"):
        digits = name[len("step-") : -len(".pt")]
        if digits.isdigit():
            return int(digits)
    return None

# Which weights each output file holds: the trained parameters or their EMA.
OUTPUT_ROLES: dict[str, str] = {
    "operator.pt": "model",
    "operator_ema.pt": "ema",
    "diffusion_residual.pt": "model",
    "diffusion_residual_ema.pt": "ema",
    "consistency_student.pt": "model",
    "consistency_student_ema.pt": "ema",
    "steady_prior.pt": "ema",
}
