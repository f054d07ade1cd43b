#!/usr/bin/env bash
# The TOFU-size study behind docs/results.md, resumable (a rerun reuses every finished cell), most
# important part first:
#   1. NPO under 4 scorers and unmasked (configs/tofu/methods.yaml) on 3 targets (training seeds 0, 1, 2
#      of the 200-author world; each built on first use and cached), with GradDiff on target 0;
#   2. the σ² ablation on target 0, GradDiff on targets 1 and 2, then the p ablation (with auto p);
#   3. the reports across targets: runs/tofu/methods/report.md and runs/tofu/graddiff/report.md.
# Usage: scripts/tofu_study.sh [OUT=runs/tofu] (env: GRIN_UNLEARN_CACHE for the models' cache).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/tofu}
GU=${GU:-.venv/bin/grin-unlearn}
sweep() { "$GU" sweep "configs/tofu/$1.yaml" --out "$OUT/$1-t$2" --target-seed "$2"; }
sweep methods 0; sweep graddiff 0; sweep methods 1; sweep methods 2
"$GU" report "$OUT/methods-t0" "$OUT/methods-t1" "$OUT/methods-t2" --out "$OUT/methods"
sweep ablation_noise 0; sweep graddiff 1; sweep graddiff 2
"$GU" report "$OUT/graddiff-t0" "$OUT/graddiff-t1" "$OUT/graddiff-t2" --out "$OUT/graddiff"
sweep ablation_p 0
