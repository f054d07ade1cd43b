"""Parity check: Min-K%++, GradNorm and the reference-model attack against the reference implementation.

    OMP_NUM_THREADS=2 .venv/bin/python bench/check_reference_mia.py --out runs/check_reference_mia

The reference is locuslab/open-unlearning as ``../shared/reference/setup.sh`` installs it; its TOFU
evaluation runs with the metrics ``mia_min_k_plus_plus``, ``mia_gradnorm`` (p = 2, batch 1),
``mia_reference`` and ``mia_loss`` (its configs under ``configs/eval/tofu_metrics/``) on the fine-tuned
bench model of ``bench/bench_reference.py`` (TOFU-layout files of 200 authors: forget10 = 400 items,
holdout10 = 400), with the untrained bench model as the reference model. Ours: ``grin-unlearn eval
--benchmark tofu --mia-gradnorm`` of the untrained model, then of the fine-tuned one with the
untrained one's evaluation as ``--oracle`` (the reference attack's reference model). Printed: per
attack and side, the largest per-item ``|ours − reference| / max(1, |reference|)``, and the AUCs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from bench_reference import REFERENCE_SCRIPTS, build_models, write_tofu_dir

GRIN = [sys.executable, "-m", "grin_unlearn.cli"]
ATTACKS = ("loss", "min_k_plus_plus", "gradnorm", "reference")
METRICS = "[" + ",".join(f"mia_{a}" for a in ATTACKS) + "]"


def run(command: list[str], env: dict, log: Path) -> None:
    with open(log, "w") as handle:
        subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT, check=True)


def worst_difference(ours: dict, reference: dict) -> tuple[float, int]:
    worst, count = 0.0, 0
    for index, row in reference["value_by_index"].items():
        mine, theirs = ours[int(index)], row["score"]
        if theirs is not None and math.isfinite(theirs):
            worst, count = max(worst, abs(mine - theirs) / max(1.0, abs(theirs))), count + 1
    return worst, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/check_reference_mia")
    args = parser.parse_args()
    work = Path(args.out).resolve()
    tofu = work / "tofu"
    models = build_models(work, write_tofu_dir(tofu))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    reference_out = work / "ou" / "eval" / "mia"
    run(["bash", str(REFERENCE_SCRIPTS / "run_eval.sh"), "mia", str(models["finetuned"]), "null",
         f"+eval/tofu_metrics={METRICS}", f"eval.tofu.metrics.mia_reference.reference_model_path={models['untrained']}"],
        dict(env, TOFU_DIR=str(tofu), RUNS_DIR=str(work / "ou")), work / "reference.log")
    for kind, oracle in (("untrained", []), ("finetuned", ["--oracle", str(work / "ours_untrained")])):
        run(GRIN + ["eval", "--model", str(models[kind]), "--benchmark", "tofu", "--data", str(tofu), "--out",
                    str(work / f"ours_{kind}"), "--overwrite", "--no-generation", "--mia-gradnorm", *oracle],
            env, work / f"ours_{kind}.log")
    ours = json.loads((work / "ours_finetuned" / "eval.json").read_text())
    oracle = json.loads((work / "ours_untrained" / "eval.json").read_text())
    theirs = json.loads((reference_out / "TOFU_EVAL.json").read_text())
    sets = {entry["role"]: entry["per_item"] for entry in ours["sets"].values() if entry["role"] in ("forget", "holdout")}
    base = {entry["role"]: entry["per_item"] for entry in oracle["sets"].values() if entry["role"] in ("forget", "holdout")}
    print("| attack | side | items | max per-item difference | AUC ours | AUC reference |")
    print("|---|---|---:|---:|---:|---:|")
    for attack in ATTACKS:
        for side in ("forget", "holdout"):
            if attack == "reference":
                values = [a - b for a, b in zip(sets[side]["mia_loss"], base[side]["mia_loss"])]
            else:
                values = sets[side][f"mia_{attack}"]
            diff, count = worst_difference(values, theirs[f"mia_{attack}"][side])
            print(f"| {attack} | {side} | {count} | {diff:.1e} | {ours['aggregates'].get(f'mia_auc_{attack}'):.4f} | "
                  f"{theirs[f'mia_{attack}']['auc']:.4f} |")


if __name__ == "__main__":
    main()
