"""`grin-unlearn sweep CONFIG.yaml`: run a grid of unlearning configs (resumable), then write its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.report import config_label
from ..run_dir import is_evaluated

NAME = "sweep"
HELP = "run every cell of a sweep file (finished cells are reused) and write report.md with plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG.yaml", help="sweep file (see configs/ablation_ratio.yaml)")
    parser.add_argument("--out", help="output folder (default runs/<config file stem>)")
    parser.add_argument("--cache-dir", help="where the embedded world and models are cached "
                                            "(default $GRIN_UNLEARN_CACHE or ~/.cache/grin-unlearn)")
    parser.add_argument("--target-seed", type=int,
                        help="another target of the embedded benchmark: its training seed (embedded.finetune.seed, "
                             "which also seeds the base); run one sweep per seed and pass their folders to "
                             "`grin-unlearn report` for claims over several targets")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and exit without running anything")


def run(args: argparse.Namespace) -> int:
    from ..experiments.aggregate import make_sweep_report
    from ..experiments.sweep import run_sweep
    from ..experiments.sweep_spec import expand_grid, load_spec

    out = Path(args.out or Path("runs") / Path(args.config).stem)
    if args.dry_run:
        cells = expand_grid(load_spec(args.config))
        for index, cell in enumerate(cells, start=1):
            done = is_evaluated(out / "cells" / cell.name)
            print(f"[{index}/{len(cells)}] {cell.name}  ({config_label(cell.values)}){'  [finished]' if done else ''}")
        print(f"{len(cells)} cells -> {out / 'cells'}")
        return 0
    run_sweep(args.config, out, args.cache_dir, log=lambda *a, **k: print(*a, flush=True), target_seed=args.target_seed)
    report, table = make_sweep_report(out)
    print()
    print(table)
    print(f"\nreport: {report}")
    return 0
