"""The WMDP-stand-in carry-over table of docs/results.md: the tuner's final models on ``wmdp world``.

    python scripts/wmdp_carry_over.py runs/tune_npo [--out runs/wmdp_carry]

``wmdp world`` trains on the embedded world's forget10 / retain90 (``data/benchmark_adapters.py``), the sets
the tuner's reruns (``<tune>/final/<method>/<hash>/seed<k>/model``) unlearned, so those models are the
carried-over runs. Each one, the target and the oracle is evaluated by ``grin-unlearn eval --benchmark
wmdp --forget-split world`` (an existing ``<out>/<name>/eval.json`` is reused), and the cloze and
letter accuracies on ``forget_mcq`` / ``retain_mcq`` are printed as mean ± sample std over the seeds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from grin_unlearn.experiments.aggregate import mean_std
from grin_unlearn.experiments.embedded import prepare_embedded

SETS, METRICS = ("forget_mcq", "retain_mcq"), ("cloze_accuracy", "multiple_choice_accuracy")


def evaluate(model: Path, world: Path, out: Path) -> dict:
    if not (out / "eval.json").is_file():
        cli = str(Path(sys.executable).parent / "grin-unlearn")
        subprocess.run([cli, "eval", "--model", str(model), "--benchmark", "wmdp", "--forget-split", "world",
                        "--data", str(world), "--out", str(out)], check=True)
    sets = json.loads((out / "eval.json").read_text())["sets"]
    return {f"{m} {s}": sets[s]["metrics"][m] for s in SETS for m in METRICS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tune_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/wmdp_carry"))
    args = parser.parse_args()
    assets = prepare_embedded()
    groups = {"target": [(assets.target, args.out / "target")], "oracle": [(assets.oracle, args.out / "oracle")]}
    for seed_dir in sorted(args.tune_dir.glob("final/*/*/seed*")):  # final/<method>/<hash>/seed<k>
        groups.setdefault(seed_dir.parts[-3], []).append((seed_dir / "model", args.out / "_".join(seed_dir.parts[-3:])))
    columns = [f"{m} {s}" for s in SETS for m in METRICS]
    print("| model | n | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for name, models in groups.items():
        rows = [evaluate(model, assets.world, out) for model, out in models]
        cells = [mean_std([row[c] for row in rows]) for c in columns]
        print(f"| {name} | {len(rows)} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in cells) + " |")


if __name__ == "__main__":
    main()
