"""Copies of a checkpoint directory off the machine, and the W&B run that goes with them.

`store` (the interface) · `fsspec_store` / `wandb_store` (the two backends) ·
`snapshot` (what a copy holds: pure) · `sync` (background uploads during training) ·
`download` (verified downloads onto a fresh machine) · `wandb_run` (start/continue the run) ·
`wandb_lookup` / `object_store` (existence that tells "not found" from "could not ask",
the checks made before training).
"""
