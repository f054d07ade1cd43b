"""GRIN's mask against a random mask of the same p and against no mask, on the real model, a few seeds.

    python scripts/real_mask_control.py --seeds 0 1 --out runs/real_mask_control   # resumable

The control the real-model study needs first (issue #33), at `make demo-real`'s **untuned** setting:
NPO (lr 5e-5, 5 epochs, batch 8, β 0.1, α 1) with scorer ``grin`` (p = 0.4), ``random`` (p = 0.4)
and ``none``, each seed a different data order (and random mask), bf16 autocast, evaluated as the demo
evaluates (TOFU protocol, retain capped at 100) against the oracle. Prints and writes
``<out>/report.md``: mean ± sample std over the seeds. One setting for all three, so a method that
forgets less can look better on utility for free: read forgetting and utility together.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace
from pathlib import Path

from grin_unlearn.config import NoiseConfig, SelectionConfig, UnlearnConfig
from grin_unlearn.evaluation import aggregate, default_roles
from grin_unlearn.experiments.demo import cached_eval_name
from grin_unlearn.experiments.real_benchmark import prepare_real
from grin_unlearn.experiments.real_demo import REAL_EVAL, REAL_NPO, REAL_TRAIN
from grin_unlearn.experiments.runs import evaluate_model_dir, run_cell
from grin_unlearn.io_utils import atomic_write_text
from grin_unlearn.precision import autocast

SCORERS = ("grin", "random", "none")
SHOWN = (("forget_keyword_accuracy", "forget keyword acc ↓"), ("forget_rouge_l", "forget ROUGE-L ↓"),
         ("forget_quality", "forget quality ↑"), ("model_utility", "model utility ↑"),
         ("knowledge_accuracy", "knowledge acc ↑"), ("retain_keyword_accuracy", "retain keyword acc ↑"))


def cell_config(scorer: str, seed: int) -> UnlearnConfig:
    ratio = 0.4 if scorer != "none" else 1.0
    return UnlearnConfig("npo", SelectionConfig(scorer=scorer, ratio=ratio), NoiseConfig(noise_var=0.0),
                         replace(REAL_TRAIN, seed=seed), replace(REAL_NPO))


def cell_text(values: list[float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {spread:.3f}" if abs(mean) >= 1e-3 or mean == 0 else f"{mean:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path("runs/real_mask_control"))
    args = parser.parse_args()
    assets = prepare_real()
    config = assets.config
    forget, retain = config.forget_split, config.retain_split
    roles = default_roles(assets.world, forget, retain)
    with autocast("bf16"):
        oracle = evaluate_model_dir(assets.oracle, assets.world, roles,
                                    assets.oracle / cached_eval_name(forget, REAL_EVAL, "bf16"), REAL_EVAL)
        oracle["aggregates"] = aggregate(oracle["sets"], oracle)
        results: dict[str, list[dict]] = {s: [] for s in SCORERS}
        for seed in args.seeds:
            for scorer in SCORERS:
                print(f"seed {seed}, scorer {scorer}", flush=True)
                cell = run_cell(assets.target, assets.world, forget, retain, roles, cell_config(scorer, seed),
                                args.out / f"{scorer}-s{seed}", REAL_EVAL, oracle, log=lambda *a, **k: None)
                results[scorer].append(cell.eval["aggregates"])
    header = ["scorer (p)", *(title for _, title in SHOWN), "n"]
    lines = [f"# GRIN vs random vs no mask on the real model (`python scripts/real_mask_control.py --seeds "
             f"{' '.join(map(str, args.seeds))}`)", "",
             "NPO at `make demo-real`'s untuned setting; mean ± sample std over the seeds.", "",
             "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for scorer in SCORERS:
        cells = [cell_text([a[key] for a in results[scorer] if a.get(key) is not None]) for key, _ in SHOWN]
        label = f"{scorer} ({0.4 if scorer != 'none' else 1.0})"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(results[scorer])} |")
    atomic_write_text(args.out / "report.md", "\n".join(lines) + "\n")
    atomic_write_text(args.out / "results.json", json.dumps(results, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
