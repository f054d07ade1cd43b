"""`grin-unlearn eval`: TOFU metrics of a model on the forget / retain / holdout / world-facts sets."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.formatting import PromptFormat
from ..errors import UserInputError
from .common import add_data_arguments, add_model_arguments

NAME = "eval"
HELP = "evaluate a model with the TOFU metrics (forget quality vs an oracle, model utility, MIA) into DIR/eval.json"


def _optional_count(text: str) -> int | None:
    value = int(text)
    return None if value == 0 else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--oracle", help="eval.json (or run folder holding one) of the retain-only oracle model, "
                                         "for forget quality and PrivLeak")
    parser.add_argument("--out", required=True, help="folder to write eval.json into (created if missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DIR/eval.json")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="greedy generation length (default 32)")
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per forward pass (default 32)")
    parser.add_argument("--max-items", type=_optional_count, default=None,
                        help="evaluate only the first N items of every set (default: all)")
    parser.add_argument("--retain-max-items", type=_optional_count, default=200,
                        help="cap on the retain set (default 200; 0 = all)")
    parser.add_argument("--no-generation", action="store_true", help="skip generation (no ROUGE-L / keyword accuracy)")
    parser.add_argument("--no-mia", action="store_true", help="skip the membership-inference scores")


def run(args: argparse.Namespace) -> int:
    from ..evaluate import EvalConfig, default_roles, evaluate, format_summary, load_eval, load_eval_sets, save_eval
    from ..models import load_model, load_tokenizer

    target = Path(args.out).expanduser() / "eval.json"
    if target.exists() and not args.overwrite:
        raise UserInputError(f"--out: {target} already exists (pass --overwrite to replace it)")
    config = EvalConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, max_items=args.max_items,
                        retain_max_items=args.retain_max_items, mia=not args.no_mia,
                        generation=not args.no_generation)
    # Everything the user can get wrong is checked before the (slow) model load.
    roles = default_roles(args.data, args.forget, args.retain)
    sets = load_eval_sets(args.data, roles)
    oracle = load_eval(args.oracle) if args.oracle else None
    tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
    model = load_model(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    fmt = PromptFormat(chat_template=args.chat_template, max_length=args.max_length)
    result = evaluate(model, tokenizer, sets, roles, fmt, config, oracle)
    result["config"].update({"model": str(args.model), "data": str(args.data),
                             "oracle_path": str(args.oracle) if args.oracle else None})
    save_eval(target, result)
    print(format_summary(result))
    print(f"\nwrote {target}")
    return 0
