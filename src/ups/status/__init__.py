"""Where a run stands, for `ups status` / `scripts/show_training_status.py`.

- `rundir`: a checkpoint directory on this disk or behind any fsspec URI, read through
  the same remote reader `--resume-from` uses (`ups.remote.fsspec_store.FsspecReader`);
- `dashboard`: every fact the command shows, gathered once from the files alone;
- `text`: those facts printed in the spec's sections.
"""
