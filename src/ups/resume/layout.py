"""Names on disk: every file name in a checkpoint directory, defined once.

Readers (status dashboard, remote sync, rebuild) and writers (the trainer) agree
on these; nothing else in the project spells a checkpoint file name. A stage's
own files are declared with the stage (`ups.stages`); the tables here derive from it.
"""

from __future__ import annotations

from ups import stages

STATUS_FILE = "stage_status.json"
METADATA_FILE = "metadata.json"
METRICS_FILE = "metrics.jsonl"
STATE_DIR = "state"
SCHEMA_VERSION = 1

# Derived from the stage declarations (`ups.stages`), the one home of each stage's files.
STAGE_NAMES = stages.names()
# Files each stage owns. No stage writes another stage's file.
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {s.name: s.files for s in stages.STAGES}
# The file a stage's status entry names as its `checkpoint` (the one downstream reads).
STAGE_CHECKPOINT: dict[str, str] = {s.name: s.checkpoint for s in stages.STAGES}
# Which weights each output file holds: the trained parameters or their EMA.
OUTPUT_ROLES: dict[str, str] = {o.file: o.role for s in stages.STAGES for o in s.outputs}


def state_file_name(step: int) -> str:
    return f"step-{step:09d}.pt"


def parse_state_step(name: str) -> int | None:
    if name.startswith("step-") and name.endswith(".pt"):
        digits = name[len("step-") : -len(".pt")]
        if digits.isdigit():
            return int(digits)
    return None
