"""`grin-unlearn report SWEEP_DIR`: (re)write a sweep's report.md and plots from its cells; print the table."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "write or refresh report.md and the plots of a sweep folder, and print its table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dir", metavar="SWEEP_DIR", help="output folder of `grin-unlearn sweep` (holds sweep.json)")


def run(args: argparse.Namespace) -> int:
    from ..experiments.aggregate import make_sweep_report

    report, table = make_sweep_report(args.sweep_dir)
    print(table)
    print(f"\nreport: {report}")
    return 0
