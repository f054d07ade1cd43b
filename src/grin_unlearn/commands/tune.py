"""`grin-unlearn tune CONFIG.yaml`: equal-budget Optuna trials per method on a validation split, the
chosen configs rerun over seeds on the reported split, then report.md with Pareto plots (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "tune"
HELP = "tune every method (objective × scorer) with the same number of Optuna trials, rerun the chosen configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG.yaml", help="tuner file (see configs/tune/npo.yaml)")
    parser.add_argument("--out", help="output folder (default runs/tune_<config file stem>); rerun to resume")
    parser.add_argument("--cache-dir", help="where the embedded world and models are cached "
                                            "(default $GRIN_UNLEARN_CACHE or ~/.cache/grin-unlearn)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite report.md from <out>/tune.json")


def run(args: argparse.Namespace) -> int:
    from ..experiments.tune import run_tune
    from ..experiments.tune_report import write_tune_report

    out = Path(args.out or Path("runs") / f"tune_{Path(args.config).stem}")
    if not args.report_only:
        run_tune(args.config, out, args.cache_dir, log=lambda *a, **k: print(*a, flush=True))
    print(f"report: {write_tune_report(out)}")
    return 0
