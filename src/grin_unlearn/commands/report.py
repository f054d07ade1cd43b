"""`grin-unlearn report SWEEP_DIR [SWEEP_DIR ...]`: (re)write a sweep's report.md and plots from its
cells and print its table; several folders of one sweep file on different targets give one report
across targets (``--out``)."""

from __future__ import annotations

import argparse

from ..errors import UserInputError

NAME = "report"
HELP = "write or refresh report.md and the plots of a sweep folder (or of several, across targets)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep_dirs", metavar="SWEEP_DIR", nargs="+",
                        help="output folder of `grin-unlearn sweep` (holds sweep.json); several folders of the same "
                             "sweep file run with different --target-seed give a report across targets")
    parser.add_argument("--out", help="folder for the report across targets (needed with several SWEEP_DIRs)")


def run(args: argparse.Namespace) -> int:
    if len(args.sweep_dirs) == 1:
        from ..experiments.aggregate import make_sweep_report

        report, table = make_sweep_report(args.sweep_dirs[0])
    else:
        from ..experiments.across_targets import make_across_targets_report

        if not args.out:
            raise UserInputError("--out: a report across several sweep folders needs a folder to be written to")
        report, table = make_across_targets_report(args.sweep_dirs, args.out)
    print(table)
    print(f"\nreport: {report}")
    return 0
