"""`grin-unlearn eval`: TOFU metrics (forget / retain / holdout / world-facts), benchmark metrics, lm-eval hand-off."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.formatting import PromptFormat
from ..errors import UserInputError
from ..io_utils import atomic_write_json
from .common import add_data_arguments, add_model_arguments, load_eval_sets_for

NAME = "eval"
HELP = ("evaluate a model with the TOFU metrics (forget quality vs an oracle, model utility, MIA), or a benchmark's "
        "(WMDP/MMLU accuracy, PKU safety rates), into DIR/eval.json")


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
    parser.add_argument("--safety-classifier", metavar="DIR",
                        help="local text-classification model folder scoring P(unsafe) of each generation "
                             "(safety sets of --benchmark pku); see docs/benchmarks_usage.md")
    parser.add_argument("--safety-unsafe-label", default="unsafe",
                        help="the --safety-classifier label that means unsafe (default: unsafe)")
    parser.add_argument("--lm-eval-tasks", metavar="TASKS",
                        help="also run lm-evaluation-harness on --model (comma-separated tasks, e.g. wmdp,mmlu) into "
                             "DIR/lm_eval.json; needs `pip install grin-unlearn[lm-eval]`. Without --data/--benchmark "
                             "only these tasks run")


def run(args: argparse.Namespace) -> int:
    from ..evaluate import EvalConfig, evaluate, format_summary, load_eval, save_eval
    from ..models import load_model, load_tokenizer

    out = Path(args.out).expanduser()
    lm_eval_only = bool(args.lm_eval_tasks) and args.benchmark == "auto" and not args.data
    targets = ([] if lm_eval_only else [out / "eval.json"]) + ([out / LM_EVAL_FILE] if args.lm_eval_tasks else [])
    for target in targets:
        if target.exists() and not args.overwrite:
            raise UserInputError(f"--out: {target} already exists (pass --overwrite to replace it)")
    tasks = lm_eval_tasks(args.lm_eval_tasks) if args.lm_eval_tasks else None  # checks lm_eval is installed
    config = EvalConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, max_items=args.max_items,
                        retain_max_items=args.retain_max_items, mia=not args.no_mia,
                        generation=not args.no_generation)
    if not lm_eval_only:
        # Everything the user can get wrong is checked before the (slow) model load.
        plan = load_eval_sets_for(args)
        oracle = load_eval(args.oracle) if args.oracle else None
        tokenizer = load_tokenizer(args.model, trust_remote_code=args.trust_remote_code)
        model = load_model(args.model, dtype=args.dtype, trust_remote_code=args.trust_remote_code)
        fmt = PromptFormat(chat_template=args.chat_template, max_length=args.max_length)
        result = evaluate(model, tokenizer, plan.sets, plan.roles, fmt, config, oracle)
        if plan.safety:
            from ..safety_eval import SafetyClassifier, add_safety_results

            classifier = (SafetyClassifier(args.safety_classifier, args.safety_unsafe_label, args.batch_size)
                          if args.safety_classifier else None)
            add_safety_results(result, model, tokenizer, plan.safety, fmt, config, classifier)
        if args.benchmark != "auto":  # one accuracy per multiple-choice set (WMDP: wmdp-<domain>, mmlu)
            for name, entry in result["sets"].items():
                if entry["role"] == "mcq":
                    result["aggregates"][f"accuracy_{name}"] = entry["metrics"]["multiple_choice_accuracy"]
        result["config"].update({"model": str(args.model), "data": str(plan.data), "benchmark": args.benchmark,
                                 "forget": args.forget, "retain": args.retain,
                                 "oracle_path": str(args.oracle) if args.oracle else None})
        save_eval(out / "eval.json", result)
        print(format_summary(result))
        print(f"\nwrote {out / 'eval.json'}")
        del model
    if tasks:
        summary = run_lm_eval(str(args.model), tasks, args.dtype, args.batch_size, args.max_items,
                              args.trust_remote_code)
        atomic_write_json(out / LM_EVAL_FILE, summary)
        print(json.dumps(summary["results"], indent=1, default=str))
        print(f"\nwrote {out / LM_EVAL_FILE}")
    return 0


LM_EVAL_FILE = "lm_eval.json"


def lm_eval_tasks(text: str) -> list[str]:
    """The task names of ``--lm-eval-tasks``; a clear error when lm-evaluation-harness is not installed."""
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    if not tasks:
        raise UserInputError(f"--lm-eval-tasks: expected comma-separated task names (e.g. wmdp,mmlu), got {text!r}")
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise UserInputError("--lm-eval-tasks: lm-evaluation-harness is not installed; run "
                             "`pip install grin-unlearn[lm-eval]` (or `pip install lm-eval`), or run "
                             "`lm_eval --model hf --model_args pretrained=DIR --tasks ...` yourself") from None
    return tasks


def run_lm_eval(model: str, tasks: list[str], dtype: str, batch_size: int, limit: int | None,
                trust_remote_code: bool) -> dict:
    """``lm_eval.simple_evaluate`` on the model folder (the ``hf`` backend, as the ``lm_eval`` CLI would).

    ``limit`` (``--max-items``) caps the examples per task. Returns the JSON-ready results, task
    versions, n-shot and the call's settings (no per-sample logs).
    """
    import lm_eval
    import torch

    model_args = f"pretrained={model},dtype={dtype}" + (",trust_remote_code=True" if trust_remote_code else "")
    output = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=tasks, batch_size=batch_size,
                                     limit=limit, device="cuda" if torch.cuda.is_available() else "cpu",
                                     log_samples=False)
    keep = {key: (output or {}).get(key) for key in ("results", "groups", "versions", "n-shot")}
    keep["settings"] = {"model": model, "model_args": model_args, "tasks": tasks, "batch_size": batch_size,
                        "limit": limit}
    return json.loads(json.dumps(keep, default=str))
