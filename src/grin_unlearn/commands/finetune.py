"""`grin-unlearn finetune`: supervised fine-tuning on splits (target = all data, oracle = retain only)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..data.records import load_qa_split
from ..errors import UserInputError
from ..experiments.embedded import BUILTIN_FINETUNE, EmbeddedConfig, builtin_base
from ..models import TinyModelConfig, load_model, load_tokenizer
from ..training.finetune import FinetuneConfig, finetune
from .common import add_prompt_format_arguments, prompt_format_from_args

NAME = "finetune"
HELP = "fine-tune a model on one or more splits (loss on answer tokens only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model folder or Hub id; 'builtin' builds the demo's base: the tiny Llama over the "
                             "subword tokenizer of --data's strings, pretrained on its background split if it has one")
    parser.add_argument("--data", required=True, help="folder of <split>.json files or a Hub dataset id")
    parser.add_argument("--splits", nargs="+", default=["full", "world_facts"],
                        help="splits to train on (target: full world_facts; oracle: retain90 world_facts)")
    parser.add_argument("--out", required=True, help="folder for the fine-tuned model")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    recipe = BUILTIN_FINETUNE  # the demo's target/oracle recipe
    parser.add_argument("--epochs", type=int, default=recipe.epochs)
    parser.add_argument("--lr", type=float, default=recipe.learning_rate)
    parser.add_argument("--batch-size", type=int, default=recipe.batch_size)
    parser.add_argument("--weight-decay", type=float, default=recipe.weight_decay)
    parser.add_argument("--warmup-ratio", type=float, default=recipe.warmup_ratio)
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per example (default: the longest formatted example, so no answer is cut; "
                             "a shorter one truncates and says how many)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: autocast with fp32 master weights and optimizer state (CPUs with bf16 units, GPUs)")
    parser.add_argument("--seed", type=int, default=recipe.seed)
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--chat-template", action="store_true")
    add_prompt_format_arguments(parser)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if (out / "config.json").exists() and not args.overwrite:
        raise UserInputError(f"--out: {out} already holds a model (pass --overwrite to replace it)")
    config = FinetuneConfig(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
                            weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
                            max_length=args.max_length, seed=args.seed, precision=args.precision)
    records = [r for split in args.splits for r in load_qa_split(args.data, split)]
    if args.model == "builtin":
        model, tokenizer = builtin_base(args.data, TinyModelConfig(), seed=args.seed)
    else:
        tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
        model = load_model(args.model, trust_remote_code=args.trust_remote_code)
    fmt = prompt_format_from_args(args)
    if args.model == "builtin" and args.prompt_style is None:  # the demo's recipe (see EmbeddedConfig.prompt_style)
        fmt = dataclasses.replace(fmt, style=EmbeddedConfig.prompt_style)
    finetune(model.train(), tokenizer, records, config, out, fmt=fmt)
    print(f"fine-tuned on {len(records)} examples from {', '.join(args.splits)} -> {out}")
    return 0
