"""`grin-unlearn tune CONFIG.yaml`: equal-budget Optuna trials per method on a validation split, the
chosen configs rerun over seeds on the reported split, then report.md with Pareto plots (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserInputError

NAME = "tune"
HELP = "tune every method (objective × scorer) with the same number of Optuna trials, rerun the chosen configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG.yaml", help="tuner file (see configs/tune/npo.yaml)")
    parser.add_argument("--out", help="output folder (default runs/tune_<config file stem>); rerun to resume")
    parser.add_argument("--cache-dir", help="where the embedded world and models are cached "
                                            "(default $GRIN_UNLEARN_CACHE or ~/.cache/grin-unlearn)")
    parser.add_argument("--trials", type=int, help="trials per method (overrides the file; raise it to extend a run)")
    parser.add_argument("--scorers", nargs="+", help="scorers (overrides the file; a resumed run may add some)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds of the reruns (overrides the file)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite report.md from <out>/tune.json")
    parser.add_argument("--compare-auto", metavar="METHOD",
                        help="after tuning, rerun METHOD's chosen config (e.g. npo_grin) with p = auto (the coverage "
                             "and the balance rule), with p and σ² = auto, and with each --grid-ratios value; writes "
                             "<out>/auto_METHOD.md")
    parser.add_argument("--grid-ratios", nargs="*", type=float, default=[0.1, 0.2, 0.4, 0.6, 0.8],
                        help="the grid of p for --compare-auto (default 0.1 0.2 0.4 0.6 0.8; none: only the tuned p)")
    parser.add_argument("--no-auto-noise", action="store_true", help="--compare-auto without the auto σ² variant")
    parser.add_argument("--no-balance-rule", action="store_true",
                        help="--compare-auto without the balance rule's auto p variant (--ratio auto's default, the "
                             "coverage rule, always runs)")


def run(args: argparse.Namespace) -> int:
    from ..experiments.tune import run_tune
    from ..experiments.tune_report import write_tune_report

    out = Path(args.out or Path("runs") / f"tune_{Path(args.config).stem}")
    if not args.report_only:
        overrides = {k: getattr(args, k) for k in ("trials", "scorers", "seeds") if getattr(args, k) is not None}
        run_tune(args.config, out, args.cache_dir, log=lambda *a, **k: print(*a, flush=True), overrides=overrides)
    print(f"report: {write_tune_report(out)}")
    if args.compare_auto:
        from ..experiments.auto_compare import run_auto_comparison

        bad = [r for r in args.grid_ratios if not 0 < r <= 1]
        if bad:
            raise UserInputError(f"--grid-ratios: expected fractions in (0, 1], got {bad}")
        path = run_auto_comparison(out, args.compare_auto, args.grid_ratios, args.cache_dir, log=print,
                                   auto_noise=not args.no_auto_noise, balance=not args.no_balance_rule)
        print(f"auto p comparison: {path}")
    return 0
