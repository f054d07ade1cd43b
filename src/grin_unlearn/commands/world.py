"""`grin-unlearn world`: write the generated fictitious-author world as TOFU-schema JSON splits."""

from __future__ import annotations

import argparse

from ..data.world import write_world

NAME = "world"
HELP = "generate the fictitious-author world (TOFU-schema splits) into a folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write <split>.json files into")
    parser.add_argument("--authors", type=int, default=40, help="number of trainable authors (default 40)")
    parser.add_argument("--holdout-authors", type=int, default=4, help="authors no model is trained on (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty folder")


def run(args: argparse.Namespace) -> int:
    out = write_world(args.out, args.authors, args.holdout_authors, args.seed, overwrite=args.overwrite)
    print(f"wrote world ({args.authors} authors + {args.holdout_authors} holdout, seed {args.seed}) to {out}")
    return 0
