"""`grin-unlearn eval`: the TOFU protocol (forget / retain / holdout / real authors / world facts), benchmark
metrics, lm-eval hand-off."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from ..errors import UserInputError
from ..io_utils import atomic_write_json
from .common import (add_data_arguments, add_model_arguments, add_prompt_format_arguments, load_eval_sets_for,
                     prompt_format_from_args)

NAME = "eval"
HELP = ("evaluate a model with the TOFU metrics as the reference implementation computes them (forget quality vs "
        "an oracle, model utility, PrivLeak), or a benchmark's (WMDP/MMLU accuracy, PKU safety rates), into "
        "DIR/eval.json (and DIR/TOFU_EVAL.json in the reference's format)")


def _optional_count(text: str) -> int | None:
    value = int(text)
    return None if value == 0 else value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..evaluation import PROTOCOLS

    add_model_arguments(parser, max_length=False)
    add_prompt_format_arguments(parser)
    add_data_arguments(parser)
    parser.add_argument("--protocol", default="tofu", choices=sorted(PROTOCOLS),
                        help="tofu (default): the reference-compatible TOFU protocol of open-unlearning (greedy "
                             "generation of up to 200 tokens, every item); fast: 32 tokens and 200 retain items, "
                             "for sweeps (not comparable with published numbers). Flags below override it")
    parser.add_argument("--oracle", help="the retain-only oracle model's eval.json (or run folder holding one), or "
                                         "a reference TOFU_EVAL.json of a retain model; for forget quality and PrivLeak")
    parser.add_argument("--out", required=True, help="folder to write eval.json into (created if missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DIR/eval.json")
    parser.add_argument("--max-length", type=int, default=512, help="max tokens per sequence (default 512, the reference's)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="greedy generation length (default: the protocol's)")
    parser.add_argument("--stop-strings", nargs="*", default=None,
                        help="cut generations at these strings too (default: none, as the reference; EOS always)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="sequences per teacher-forced forward pass (default 64)")
    parser.add_argument("--generation-batch-size", type=int, default=None,
                        help="prompts decoded together (default: --batch-size on a GPU, at least 256 on a CPU)")
    parser.add_argument("--max-items", type=_optional_count, default=None,
                        help="evaluate only the first N items of every set (default: all)")
    parser.add_argument("--retain-max-items", type=int, default=None,
                        help="cap on the retain set (default: the protocol's; 0 = all)")
    parser.add_argument("--no-generation", action="store_true", help="skip generation (no ROUGE-L / keyword accuracy)")
    parser.add_argument("--no-mia", action="store_true", help="skip the membership-inference scores")
    parser.add_argument("--mia-gradnorm", action="store_true",
                        help="also the GradNorm attack: one backward pass per forget and holdout answer")
    parser.add_argument("--safety-classifier", metavar="DIR",
                        help="local text-classification model folder scoring P(unsafe) of each generation "
                             "(safety sets of --benchmark pku); see docs/benchmarks/")
    parser.add_argument("--safety-unsafe-label", default="unsafe",
                        help="the --safety-classifier label that means unsafe (default: unsafe)")
    parser.add_argument("--lm-eval-tasks", metavar="TASKS",
                        help="also run lm-evaluation-harness on --model (comma-separated tasks, e.g. wmdp,mmlu) into "
                             "DIR/lm_eval.json; needs `pip install grin-unlearn[lm-eval]`. Without --data/--benchmark "
                             "only these tasks run")


def eval_config_from_args(args: argparse.Namespace):
    from ..evaluation import EvalConfig

    config = EvalConfig.for_protocol(args.protocol, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                     generation_batch_size=args.generation_batch_size, max_items=args.max_items,
                                     mia=not args.no_mia, mia_gradnorm=getattr(args, "mia_gradnorm", False),
                                     generation=not args.no_generation,
                                     stop_strings=args.stop_strings or None)
    if args.retain_max_items is not None:  # 0 = every retain item
        config = replace(config, retain_max_items=args.retain_max_items or None)
    return config


def run(args: argparse.Namespace) -> int:
    from ..evaluation import REFERENCE_FILE, evaluate, format_summary, load_oracle, save_eval, to_reference_logs
    from ..evaluation.lm_eval import LM_EVAL_FILE, lm_eval_tasks, run_lm_eval
    from ..models import load_model, load_tokenizer, model_device
    from ..precision import autocast

    out = Path(args.out).expanduser()
    lm_eval_only = bool(args.lm_eval_tasks) and args.benchmark == "auto" and not args.data
    targets = ([] if lm_eval_only else [out / "eval.json"]) + ([out / LM_EVAL_FILE] if args.lm_eval_tasks else [])
    for target in targets:
        if target.exists() and not args.overwrite:
            raise UserInputError(f"--out: {target} already exists (pass --overwrite to replace it)")
    tasks = lm_eval_tasks(args.lm_eval_tasks) if args.lm_eval_tasks else None  # checks lm_eval is installed
    config = eval_config_from_args(args)
    if not lm_eval_only:
        # Everything the user can get wrong is checked before the (slow) model load.
        plan = load_eval_sets_for(args)
        oracle = load_oracle(args.oracle) if args.oracle else None
        fmt = prompt_format_from_args(args, max_length=args.max_length)
        tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
        model = load_model(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
        with autocast(args.precision, model_device(model)):
            result = evaluate(model, tokenizer, plan.sets, plan.roles, fmt, config, oracle)
        if plan.safety:
            from ..evaluation.safety import SafetyClassifier, add_safety_results

            classifier = (SafetyClassifier(args.safety_classifier, args.safety_unsafe_label, args.batch_size)
                          if args.safety_classifier else None)
            add_safety_results(result, model, tokenizer, plan.safety, fmt, config, classifier)
        if args.benchmark != "auto":  # one accuracy per multiple-choice set (WMDP: wmdp-<domain>, mmlu)
            for name, entry in result["sets"].items():
                if entry["role"] == "mcq":
                    result["aggregates"][f"accuracy_{name}"] = entry["metrics"]["multiple_choice_accuracy"]
                    result["aggregates"][f"cloze_accuracy_{name}"] = entry["metrics"]["cloze_accuracy"]
        result["config"].update({"model": str(args.model), "data": str(plan.data), "benchmark": args.benchmark,
                                 "forget": args.forget, "retain": args.retain, "precision": args.precision,
                                 "oracle_path": str(args.oracle) if args.oracle else None})
        save_eval(out / "eval.json", result)
        reference = to_reference_logs(result)
        if reference:
            atomic_write_json(out / REFERENCE_FILE, reference)
        print(format_summary(result))
        print(f"\nwrote {out / 'eval.json'}" + (f" and {out / REFERENCE_FILE}" if reference else ""))
        del model
    if tasks:
        summary = run_lm_eval(str(args.model), tasks, args.dtype, args.batch_size, args.max_items,
                              args.trust_remote_code)
        atomic_write_json(out / LM_EVAL_FILE, summary)
        print(json.dumps(summary["results"], indent=1, default=str))
        print(f"\nwrote {out / LM_EVAL_FILE}")
    return 0
