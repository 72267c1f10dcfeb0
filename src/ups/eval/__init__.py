"""Seeing a run: evaluation of checkpoints and its reports.

- `metrics`: nRMSE as PDEBench defines it (pure, tested without models);
- `evaluation`: one-step and rollout errors of the operator, the operator with the
  diffusion correction, and the persistence baseline, in physical space;
- `probabilistic`, `ensemble`, `prior`, `goals`, `later_stages`: what the sampling
  stages add (CRPS, spread/skill, spectra, MMD) and whether each meets its goal;
- `history`: per-stage loss curves from `metrics.jsonl`;
- `plots`, `figures`, `report`: matplotlib PNGs, and the JSON / CSV / HTML report beside them;

The status dashboard (`ups status`) lives in `ups.status`; the orchestrator
(`run_fast_to_sota`) beside the pipeline it drives, in `ups.pipeline`.
"""
