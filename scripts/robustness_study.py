"""Issue #24's study: both attacks on the TOFU-size study's models (docs/results.md, "Does it stay forgotten?").

For each target (training seeds 0, 1, 2 of the 200-author world) the unlearned models of the finished
sweeps under RUNS (scripts/tofu_study.sh) are attacked together with that target and its oracle:
  quantize    8-bit and 4-bit RTN per output channel;
  quantize32  4-bit RTN in groups of 32;
  relearn   0/10/25/50 steps (lr 1e-3, 4 records a step; 50 steps = one pass over the relearn half)
            on half of each forget author's questions, the other half probed;
  retain    the same on as many retain90 records (no forget facts), target 0 only.
Target 0 attacks every method and the σ² ablation; targets 1 and 2 attack NPO and GradDiff, unmasked
and under GRIN. Resumable: a finished part (OUT/<part>-t<seed>/attack.json) is skipped.

Usage: python scripts/robustness_study.py [--runs runs/tofu] [--out runs/robustness] [--parts ...]
Then:  python scripts/robustness_report.py runs/robustness
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from grin_unlearn.cli import main as cli
from grin_unlearn.experiments.embedded import prepare_embedded
from grin_unlearn.experiments.sweep import with_target_seed
from grin_unlearn.experiments.sweep_spec import load_spec

SWEEPS = {0: ("methods", "graddiff", "ablation_noise"), 1: ("methods", "graddiff"), 2: ("methods", "graddiff")}
SMALL_LR = ("small_lr",)  # configs/tofu/small_lr.yaml: the same methods at lr 1e-5, target 0
TARGET_0_ONLY = ("wagle", "random", "forget-grad")
ATTACKS = {
    "quantize": ["quantize", "--bits", "8", "4", "--group-size", "0"],  # per output channel
    "quantize32": ["quantize", "--bits", "4", "--group-size", "32"],
    "relearn": ["relearn", "--steps", "0", "10", "25", "50", "--lr", "1e-3", "--relearn-batch-size", "4"],
    "retain": ["relearn", "--relearn-on", "retain", "--steps", "0", "10", "25", "50", "--lr", "1e-3",
               "--relearn-batch-size", "4"],
}
PARTS = tuple(f"{attack}-t{seed}" for seed in (0, 1, 2) for attack in ("quantize", "quantize32", "relearn")) + (
    "retain-t0", "quantize-small-t0", "quantize32-small-t0", "relearn-small-t0")


def models_of(runs: Path, seed: int, sweeps: tuple[str, ...]) -> list[str]:
    """``LABEL=PATH`` of every finished unlearned model of target ``seed``'s ``sweeps``."""
    items = []
    for sweep in sweeps:
        for cell in sorted((runs / f"{sweep}-t{seed}" / "cells").glob("*/model")):
            name = cell.parent.name
            if seed == 0 or not any(f"_{scorer}_" in name for scorer in TARGET_0_ONLY):
                items.append(f"{name}={cell}")
    return items


def run_part(part: str, runs: Path, out: Path) -> None:
    attack, seed = part.rsplit("-t", 1)
    attack, small = attack.removesuffix("-small"), attack.endswith("-small")
    folder = out / part
    if (folder / "attack.json").exists():
        print(f"{part}: done already")
        return
    spec = with_target_seed(load_spec("configs/tofu/methods.yaml"), int(seed))
    assets = prepare_embedded(spec.embedded)
    if small:  # the lr 1e-5 models are this study's own: swept here on first use (resumable)
        sweep = runs / f"{SMALL_LR[0]}-t{seed}"
        if cli(["sweep", f"configs/tofu/{SMALL_LR[0]}.yaml", "--out", str(sweep), "--target-seed", seed]) != 0:
            raise SystemExit(f"{part}: the {SMALL_LR[0]} sweep failed")
    models = models_of(runs, int(seed), SMALL_LR if small else SWEEPS[int(seed)])
    args = ["attack", *ATTACKS[attack], "--models", *models, "--target", str(assets.target),
            "--oracle", str(assets.oracle), "--data", str(assets.world), "--dtype", "float32", "--out", str(folder)]
    start = time.time()
    if cli(args) != 0:
        raise SystemExit(f"{part}: the attack failed")
    print(f"{part}: {time.time() - start:.0f} s", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/tofu", type=Path, help="the TOFU-size study's sweeps")
    parser.add_argument("--out", default="runs/robustness", type=Path, help="where each part's attack.json goes")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS, help="parts to run, in order")
    return parser.parse_args()


if __name__ == "__main__":
    options = parse_args()
    for name in options.parts:
        run_part(name, options.runs, options.out)
