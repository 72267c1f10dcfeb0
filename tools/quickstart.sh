#!/usr/bin/env bash
# The main job on a fresh machine: set up, generate the built-in Burgers data,
# train all four stages with configs/quickstart.yaml, evaluate on the test split.
# Rerunning it resumes (--auto-resume): finished stages are verified and skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
. .venv/bin/activate
config=configs/quickstart.yaml
ckpt=checkpoints/quickstart
report=reports/quickstart
start=$(date +%s)
python scripts/train.py --config "$config" --stage all --auto-resume
python scripts/evaluate.py --config "$config" --operator "$ckpt/operator_ema.pt" \
  --diffusion "$ckpt/diffusion_residual_ema.pt" --device cpu --output-prefix "$report"
echo
echo "Quickstart finished in $(( $(date +%s) - start ))s."
echo "  checkpoints: $ckpt/   (status: python scripts/show_training_status.py $ckpt)"
echo "  report:      $report.html  ($report.json, $report.csv, ${report}_*.png beside it)"
