"""`grin-unlearn unlearn`: select → noise → masked unlearning → save, on any HF causal LM."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import (MonitorConfig, NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig, config_from_mapping,
                      load_yaml)
from .config_flags import add_dataclass_arguments, mapping_with_flags
from ..data.unlearning import check_objective_accepts
from ..parallel.distributed import fsdp2_requested, is_main_process
from ..errors import UserInputError
from ..masks import load_mask
from ..models import load_model, load_tokenizer, model_device
from ..precision import autocast
from ..training.objectives import OBJECTIVES, ObjectiveHyperparams, get_objective
from ..run_dir import check_out_dir, check_resume_record
from ..pipeline import resume_record, unlearn
from .common import (add_data_arguments, add_model_arguments, add_output_arguments, add_prompt_format_arguments,
                     load_training_sets, prompt_format_from_args)

NAME = "unlearn"
HELP = "run GRIN (or a baseline) on a model: select weights, add noise, unlearn only the selected weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, max_length=False)
    add_prompt_format_arguments(parser)
    add_data_arguments(parser)
    add_output_arguments(parser)
    parser.add_argument("--objective", default=None, help=f"base objective: {', '.join(sorted(OBJECTIVES))} (default npo); "
                        "its hyperparameters, learning rate and epochs default to the objective's own")
    parser.add_argument("--config", help="YAML file with objective/selection/noise/train/hyperparams sections; flags override it")
    parser.add_argument("--mask", help="reuse a saved mask.safetensors instead of scoring")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--strict", action="store_true",
                        help="treat questions present in both the forget and the retain split as an error "
                             "(default: a warning with their count)")
    for cls in (SelectionConfig, NoiseConfig, TrainConfig, ObjectiveHyperparams, MonitorConfig):
        add_dataclass_arguments(parser, cls)


def resolve_config(args: argparse.Namespace) -> UnlearnConfig:
    """The YAML file (if any) with the flags laid over it, then the objective's defaults for the rest."""
    base = load_yaml(args.config) if args.config else {}
    source = args.config or "command line"
    return config_from_mapping(mapping_with_flags(base, args, args.objective), source)


def run(args: argparse.Namespace) -> int:
    """Validate every input (config, output folder, mask file, data) before the model is loaded."""
    config = resolve_config(args)
    check_out_dir(Path(args.out), overwrite=args.overwrite, resume=args.resume)
    if args.mask:
        if not Path(args.mask).is_file():
            raise UserInputError(f"--mask: {args.mask} is not a file (expected a mask.safetensors from a previous run)")
        load_mask(args.mask)  # format check now; shapes are checked against the model before any work
    sets = load_training_sets(args)
    forget, retain = sets.forget, sets.retain
    check_objective_accepts(forget, config.objective, get_objective(config.objective).needs_refusal)
    check_overlap(forget, retain, strict=args.strict)
    fmt = prompt_format_from_args(args, max_length=config.train.max_length)
    if args.resume:  # before the model is loaded; unlearn() checks again
        check_resume_record(Path(args.out), resume_record(config, forget, retain, fmt, args.mask))
    tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
    # Under FSDP2 every process loads the whole model on its CPU; unlearn() moves only its shards to its device.
    model = load_model(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                       device="cpu" if fsdp2_requested() else None)
    with autocast(args.precision, model_device(model)):  # scoring, reference log-probs and training
        result = unlearn(model, tokenizer, forget, retain, config, args.out, fmt=fmt, mask_path=args.mask,
                         resume=args.resume, overwrite=args.overwrite)
    if is_main_process():
        print(json.dumps({"out": str(result.out_dir), "timing_s": {k: round(v, 2) for k, v in result.timing.items()}},
                         indent=1))
    return 0


def check_overlap(forget: list[dict], retain: list[dict], strict: bool) -> None:
    """Questions in both splits: a warning with their count, or an error with ``--strict``."""
    def key(record: dict) -> str | None:  # raw-text records (WMDP corpora) compare by their text
        return record.get("question", record.get("text"))

    overlap = ({key(r) for r in forget} & {key(r) for r in retain}) - {None}
    if not overlap:
        return
    message = f"{len(overlap)} question(s) appear in both the forget and the retain split"
    if strict:
        raise UserInputError(f"--forget/--retain: {message} (expected disjoint splits; drop --strict to only warn)")
    print(f"warning: {message}; the retain term will pull them back (pass --strict to make this an error)",
          file=sys.stderr)
