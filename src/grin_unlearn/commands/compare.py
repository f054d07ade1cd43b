"""`grin-unlearn compare`: the aggregates of several runs side by side (markdown table)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "compare"
HELP = "print the eval.json aggregates of several runs side by side as a markdown table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders holding eval.json, or eval.json files")


def _label(path: str) -> str:
    path = Path(path)
    return (path.parent if path.suffix == ".json" else path).name or str(path)


def run(args: argparse.Namespace) -> int:
    from ..evaluation import compare_table, load_eval

    labels = [_label(run) for run in args.runs]
    if len(set(labels)) < len(labels):  # two runs named alike: fall back to the paths as given
        labels = list(args.runs)
    if len(set(labels)) < len(labels):  # the same path twice
        labels = [f"{i + 1}:{label}" for i, label in enumerate(labels)]
    results = {label: load_eval(run) for label, run in zip(labels, args.runs)}
    print(compare_table(results))
    return 0
