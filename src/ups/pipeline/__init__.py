"""Driving the pipeline end to end: `orchestrate` (`run_fast_to_sota`: validate, data,
train in a subprocess, small and full evaluation) and `subprocess_train`, the training
subprocess it starts with signals forwarded."""
