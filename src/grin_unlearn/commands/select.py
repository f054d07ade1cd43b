"""`grin-unlearn select`: influence scores → global top-p mask (+ density report), no training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import SelectionConfig, UnlearnConfig, add_dataclass_arguments, dataclass_from_namespace
from ..errors import UserInputError
from ..io_utils import atomic_write_json
from ..masks import density_report, plot_density, save_mask
from ..models import load_model, load_tokenizer
from ..unlearn import build_masks, environment
from .common import (add_data_arguments, add_model_arguments, add_output_arguments, add_prompt_format_arguments,
                     load_training_sets, prompt_format_from_args)

NAME = "select"
HELP = "score weights (GRIN or a baseline scorer) and save the top-p mask with its density report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_prompt_format_arguments(parser)
    add_data_arguments(parser)
    add_output_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random scorer and retain subsampling")
    add_dataclass_arguments(parser, SelectionConfig)


def run(args: argparse.Namespace) -> int:
    selection = dataclass_from_namespace(SelectionConfig, args)
    if selection.scorer == "none":
        raise UserInputError("--scorer none selects nothing; choose grin, forget-grad, magnitude, random or wagle")
    out = Path(args.out)
    if (out / "mask.safetensors").exists() and not args.overwrite:
        raise UserInputError(f"--out: {out} already holds a mask (pass --overwrite to replace it)")
    sets = load_training_sets(args)
    forget, retain = sets.forget, sets.retain
    tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
    model = load_model(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
    config = UnlearnConfig(selection=selection)
    config.train.seed = args.seed
    fmt = prompt_format_from_args(args, max_length=args.max_length)
    masks, timing = build_masks(model, tokenizer, forget, retain, config, fmt)
    resolved = {"selection": config.to_dict()["selection"], "seed": args.seed, "model": args.model,
                "prompt_format": fmt.to_dict(),
                "benchmark": args.benchmark, "data": sets.data, "forget": sets.forget_name, "retain": sets.retain_name,
                "environment": environment()}
    save_mask(out / "mask.safetensors", masks, metadata=resolved)
    report = density_report(masks)
    atomic_write_json(out / "density.json", report)
    plot_density(report, out / "density.png", title=f"{selection.scorer}, p={selection.ratio}")
    atomic_write_json(out / "config.json", resolved)
    summary = {"selected": report.get("overall"), "timing_s": {k: round(v, 2) for k, v in timing.items()},
               "out": str(out)}
    print(json.dumps(summary, indent=1))
    return 0
