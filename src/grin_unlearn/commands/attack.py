"""`grin-unlearn attack quantize|relearn`: does the forgetting survive quantization or a few steps of
relearning? Evaluates the attacked model (and, with --target/--oracle, the same attack on them) and
writes DIR/attack.json with the share of forgotten knowledge each attack brings back.

Several unlearned models share one run of the attacks on the target and the oracle: ``--models
LABEL=RUN/model …``. A model folder named ``model`` whose run folder holds ``mask.safetensors`` (the
layout ``grin-unlearn unlearn --out RUN`` writes) also gets the share of its *selected* weights whose
quantization bucket differs from the target's."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..errors import UserInputError
from .common import add_data_arguments, add_model_arguments, load_eval_sets_for, prompt_format_from_args

NAME = "attack"
HELP = ("attack an unlearned model to tell forgetting from hiding: weight quantization (RTN, 8/4 bits) or "
        "relearning on half of each forget entity's records; writes DIR/attack.json (recovery share per metric)")
ATTACK_FILE = "attack.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["quantize", "relearn"], help="the attack")
    add_model_arguments(parser, required=False, max_length=False)
    parser.add_argument("--models", nargs="+", default=[], metavar="LABEL=PATH",
                        help="more unlearned models, each under its label (with or instead of --model, whose label is "
                             "'unlearned')")
    add_data_arguments(parser)
    parser.add_argument("--target", help="the target model (before unlearning): attacked too, for the recovery share")
    parser.add_argument("--oracle", help="the oracle model (never saw the forget set): attacked too, for the recovery "
                                         "share and forget quality")
    parser.add_argument("--out", required=True, help="folder for attack.json (created if missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DIR/attack.json")
    parser.add_argument("--protocol", default="fast", choices=["fast", "tofu"],
                        help="evaluation protocol of every attacked model (default fast: 32 new tokens)")
    parser.add_argument("--max-items", type=int, default=None, help="evaluate only the first N items of every set")
    parser.add_argument("--max-length", type=int, default=None,
                        help="max tokens per sequence (default: the one recorded in the model folder, else 512)")
    quantize = parser.add_argument_group("quantize")
    quantize.add_argument("--bits", type=int, nargs="+", default=[8, 4], help="bit widths (default 8 4; 16 = bf16)")
    quantize.add_argument("--group-size", type=int, default=32,
                          help="input weights per quantization group (default 32; 0 = per output channel)")
    relearn = parser.add_argument_group("relearn")
    relearn.add_argument("--steps", type=int, nargs="+", default=[0, 5, 10, 20],
                         help="evaluate after these numbers of relearning steps (default 0 5 10 20)")
    relearn.add_argument("--lr", type=float, default=1e-3, help="relearning learning rate (default 1e-3)")
    relearn.add_argument("--relearn-batch-size", type=int, default=4, help="records per relearning step (default 4)")
    relearn.add_argument("--relearn-on", choices=["forget", "retain"], default="forget",
                         help="forget: the relearn half of each forget entity (default); retain: as many retain "
                              "records, no forget facts (the related-text variant)")
    relearn.add_argument("--relearn-eval", choices=["forget", "all"], default="forget",
                         help="forget: evaluate the probe half alone (default; the recovery metrics are forget "
                              "metrics); all: every set too, for model utility after relearning")
    relearn.add_argument("--seed", type=int, default=0, help="seed of the relearn/probe split and the batch order")


def run(args: argparse.Namespace) -> int:
    from ..evaluation import EvalConfig
    from ..evaluation.attacks.quantize import QuantizeConfig
    from ..evaluation.attacks.study import RelearnSettings, plot_relearn_recovery, quantization_study, relearn_study
    from ..io_utils import atomic_write_json
    from ..models import default_device, load_model, load_tokenizer
    from ..precision import autocast

    out = Path(args.out).expanduser()
    if (out / ATTACK_FILE).exists() and not args.overwrite:
        raise UserInputError(f"--out: {out / ATTACK_FILE} already exists (pass --overwrite to replace it)")
    plan = load_eval_sets_for(args)
    config = EvalConfig.for_protocol(args.protocol, max_items=args.max_items, mia=False)
    quant = [QuantizeConfig(bits, args.group_size or None) for bits in args.bits] if args.kind == "quantize" else []
    relearn = RelearnSettings(tuple(args.steps), args.lr, args.relearn_batch_size, args.relearn_on, args.seed,
                              args.relearn_eval)
    paths = {label: path for label, path in (("target", args.target), ("oracle", args.oracle),
                                             ("unlearned", args.model)) if path}
    paths.update(labelled_models(args.models, reserved=set(paths)))
    unlearned = [label for label in paths if label not in ("target", "oracle")]
    if not unlearned:
        raise UserInputError("--model/--models: expected at least one unlearned model to attack")
    tokenizer = load_tokenizer(str(paths[unlearned[0]]), trust_remote_code=args.trust_remote_code)
    # the prompt format recorded in the first unlearned model's folder (the others share its tokenizer)
    fmt = prompt_format_from_args(argparse.Namespace(**{**vars(args), "model": str(paths[unlearned[0]])}),
                                  max_length=args.max_length)

    def load(path):
        return load_model(str(path), dtype=args.dtype, trust_remote_code=args.trust_remote_code)

    with autocast(args.precision, default_device()):  # evaluations and relearning steps (weights, AdamW state fp32)
        if args.kind == "quantize":
            masks = {label: run_mask(paths[label]) for label in unlearned}
            report = quantization_study(paths, load, tokenizer, plan.sets, plan.roles, fmt, config, quant, masks)
        else:
            report = relearn_study(paths, load, tokenizer, plan.sets, plan.roles, fmt, config, relearn)
    if args.kind == "relearn":
        plot_relearn_recovery(report, out / "recovery.png")
    report.update(models={label: str(path) for label, path in paths.items()}, data=str(plan.data),
                  protocol=args.protocol, prompt_format=dataclasses.asdict(fmt))
    atomic_write_json(out / ATTACK_FILE, report)
    for label in unlearned:
        print(f"\n{label}")
        _print(report.get("recovery", {}).get(label))
    print(f"\nwrote {out / ATTACK_FILE}")
    return 0


def labelled_models(items: list[str], reserved: set[str]) -> dict[str, str]:
    """``{label: path}`` from ``LABEL=PATH`` items; a label may appear once and not as target/oracle/unlearned."""
    models: dict[str, str] = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise UserInputError(f"--models: expected LABEL=PATH, got {item!r}")
        if label in models or label in reserved or label in ("target", "oracle"):
            raise UserInputError(f"--models: label {label!r} is used twice (target, oracle and unlearned are taken)")
        models[label] = path
    return models


def run_mask(model_path: str) -> dict | None:
    """The selection mask beside a model folder ``RUN/model`` (``RUN/mask.safetensors``), else None."""
    from ..masks import load_mask

    path = Path(model_path).expanduser()
    mask_file = path.parent / "mask.safetensors"
    return load_mask(mask_file)[0] if path.name == "model" and mask_file.is_file() else None


def _print(recovery: dict | None) -> None:
    if not recovery:
        print("(pass --target and --oracle for the recovery share)")
        return
    print(f"{'setting':<28} {'metric':<26} {'attacked':>9} {'oracle att.':>11} {'target':>8} {'oracle':>8} {'recovery':>9}")
    for setting, table in recovery.items():
        for metric, row in table.items():
            cells = [row[k] for k in ("attacked", "oracle_attacked", "target", "oracle", "recovery")]
            text = ["-" if v is None else f"{v:.3f}" for v in cells]
            print(f"{setting:<28} {metric:<26} {text[0]:>9} {text[1]:>11} {text[2]:>8} {text[3]:>8} {text[4]:>9}")
