"""`grin-unlearn select`: influence scores → global top-p mask (+ density report), no training.

Under ``torchrun`` / ``accelerate launch`` the processes share the scoring: DDP-style (whole model per
process, batches split, ``G`` all-reduced) by default, or FSDP2 (``configs/accelerate/fsdp2.yaml``: the
model, gradients, scores and mask sharded by rows). Only the main process writes the folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..config import SelectionConfig
from .config_flags import add_dataclass_arguments, dataclass_from_namespace
from ..parallel.distributed import fsdp2_requested, init_from_launcher, is_main_process, wait_for_everyone
from ..errors import UserInputError
from ..io_utils import atomic_write_json
from ..masks import save_mask_with_report
from ..models import load_model, load_tokenizer, model_device
from ..precision import autocast
from ..run_dir import CONFIG_FILE, MASK_FILE, environment
from ..parallel.sharding import full_masks, shard_model
from ..pipeline import build_masks
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
    if (out / MASK_FILE).exists() and not args.overwrite:
        raise UserInputError(f"--out: {out} already holds a mask (pass --overwrite to replace it)")
    sets = load_training_sets(args)
    forget, retain = sets.forget, sets.retain
    device = init_from_launcher()  # this process's device under torchrun / accelerate launch, else None
    sharded = fsdp2_requested()
    tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
    model = load_model(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                       device="cpu" if sharded else device)  # FSDP2 moves each process's shards to its device
    if sharded:
        shard_model(model, device)
    fmt = prompt_format_from_args(args, max_length=args.max_length)
    auto: dict = {}
    with autocast(args.precision, model_device(model)):
        masks, timing = build_masks(model, tokenizer, forget, retain, selection, args.seed, fmt,
                                    log=print if is_main_process() else lambda *_: None, auto=auto)
    if "ratio" in auto:  # record the p used; the request and its evidence go under "auto"
        selection = dataclasses.replace(selection, ratio=auto["ratio"]["ratio"])
    masks = full_masks(masks)  # FSDP2: gathered onto the main process (every process takes part)
    if is_main_process():
        resolved = {"selection": dataclasses.asdict(selection), "seed": args.seed, "model": args.model,
                    "benchmark": args.benchmark, "data": sets.data, "forget": sets.forget_name,
                    "retain": sets.retain_name, "prompt_format": fmt.to_dict(), "precision": args.precision,
                    "environment": environment(),
                    **({"auto": auto} if auto else {})}
        report = save_mask_with_report(out / MASK_FILE, masks, metadata=resolved,
                                       title=f"{selection.scorer}, p={selection.ratio}")
        atomic_write_json(out / CONFIG_FILE, resolved)
        summary = {"selected": report.get("overall"), "timing_s": {k: round(v, 2) for k, v in timing.items()},
                   "out": str(out)}
        print(json.dumps(summary, indent=1))
    wait_for_everyone()
    return 0
