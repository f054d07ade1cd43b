"""`grin-unlearn world`: write the generated fictitious-author world as TOFU-schema JSON splits."""

from __future__ import annotations

import argparse

import json

from ..data.attributes import TOFU_QUESTIONS_PER_AUTHOR
from ..data.world import write_world

NAME = "world"
HELP = "generate the fictitious-author world (TOFU-schema splits) into a folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write <split>.json files into")
    parser.add_argument("--authors", type=int, default=40, help="number of trainable authors (default 40)")
    parser.add_argument("--holdout-authors", type=int, default=None,
                        help="authors no model is trained on (default: a tenth of --authors, so the holdout set "
                             "is as large as forget10, as in TOFU)")
    parser.add_argument("--questions-per-author", type=int, default=TOFU_QUESTIONS_PER_AUTHOR,
                        help=f"questions about each author (default {TOFU_QUESTIONS_PER_AUTHOR}, as in TOFU)")
    parser.add_argument("--no-background", action="store_true",
                        help="skip the background corpus (the built-in base's pretraining text)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty folder")


def run(args: argparse.Namespace) -> int:
    holdout = args.holdout_authors if args.holdout_authors is not None else max(1, args.authors // 10)
    out = write_world(args.out, args.authors, holdout, args.seed, overwrite=args.overwrite,
                      questions_per_author=args.questions_per_author, background=not args.no_background)
    manifest = json.loads((out / "world.json").read_text(encoding="utf-8"))
    sizes = manifest["splits"]
    print(f"wrote world ({args.authors} authors + {holdout} holdout, seed {args.seed}) to {out}")
    print("questions: " + ", ".join(f"{name} {sizes[name]}" for name in
                                    ("full", "forget01", "forget05", "forget10", "holdout") if name in sizes))
    background = manifest.get("background")
    if background:
        only = background["forget_only_token_ids"]
        print(f"background corpus: {sizes['background']} sentences; tokenizer: {background['tokenizer']}")
        print("token ids that only the forget split trains: " + ", ".join(f"{k} {v}" for k, v in only.items()))
    return 0
