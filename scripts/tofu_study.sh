#!/usr/bin/env bash
# The TOFU-size study behind docs/results.md, resumable (a rerun reuses every finished cell):
#   1. on each of 3 targets (training seeds 0, 1, 2 of the 200-author world; built on first use, cached):
#      configs/tofu/methods.yaml (NPO under 4 scorers and unmasked) and configs/tofu/graddiff.yaml,
#      and on target 0 also the ablations over p (with auto p) and σ²;
#   2. the reports across targets: runs/tofu/methods/report.md and runs/tofu/graddiff/report.md.
# Usage: scripts/tofu_study.sh [OUT=runs/tofu] (env: GRIN_UNLEARN_CACHE for the models' cache).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/tofu}
GU=${GU:-.venv/bin/grin-unlearn}
for seed in 0 1 2; do
  parts="methods graddiff"
  [ "$seed" = 0 ] && parts="$parts ablation_p ablation_noise"
  for part in $parts; do
    "$GU" sweep "configs/tofu/$part.yaml" --out "$OUT/$part-t$seed" --target-seed "$seed"
  done
done
for part in methods graddiff; do
  "$GU" report "$OUT/$part-t0" "$OUT/$part-t1" "$OUT/$part-t2" --out "$OUT/$part"
done
