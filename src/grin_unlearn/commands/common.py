"""Arguments shared by several sub-commands (model, data, output folder), and the sets they name."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ..data.benchmarks import BENCHMARKS, EvalSets, TrainingSets, get_benchmark
from ..data.formatting import STYLES, PromptFormat
from ..data.records import load_qa_split
from ..errors import UserInputError


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True, max_length: bool = True) -> None:
    parser.add_argument("--model", required=required, help="local model folder (save_pretrained) or Hub id")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow custom modelling code from the model repo (off by default)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights dtype (auto: bf16 on a GPU that supports it, else fp32)")
    parser.add_argument("--chat-template", action="store_true",
                        help="format prompts with the tokenizer's chat template instead of 'Question: …\\nAnswer:'")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: autocast over fp32 weights, gradients, optimizer state and G_f/G_r (CPUs with bf16 "
                             "units, GPUs; docs/performance.md says how far it moves the numbers)")
    if max_length:  # commands with a TrainConfig get --max-length from it
        parser.add_argument("--max-length", type=int, default=128, help="max tokens per example (longer ones are truncated)")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", default="auto", choices=["auto", *sorted(BENCHMARKS)],
                        help="benchmark adapter that picks the forget, retain and eval sets "
                             "(see docs/benchmarks/); auto: the --forget/--retain splits of --data as given")
    parser.add_argument("--data", default=None,
                        help="folder of <split>.json/.jsonl files (TOFU schema) or a Hub dataset id (locuslab/TOFU); "
                             "required with --benchmark auto, else defaults to the benchmark's Hub dataset")
    parser.add_argument("--forget", "--forget-split", dest="forget", default=None,
                        help="forget split (default forget10); with --benchmark: tofu forget01|forget05|forget10, "
                             "wmdp cyber (default)|bio|chem|world, pku train|test, muse news (default)|books, each optionally "
                             "with [:N] (first N records)")
    parser.add_argument("--retain", default=None,
                        help="retain split (default retain90, or the benchmark's retain set); with --benchmark also "
                             "a .json/.jsonl file of records")


def _auto_data(args: argparse.Namespace) -> str:
    if not args.data:
        raise UserInputError("--data: required with --benchmark auto (a folder of <split>.json files or a Hub "
                             "dataset id), or pick a benchmark with --benchmark tofu|wmdp|pku|muse")
    return args.data


def load_training_sets(args: argparse.Namespace) -> TrainingSets:
    """The forget and retain sets named by ``--benchmark``/``--data``/``--forget``/``--retain``."""
    if args.benchmark == "auto":
        data, forget, retain = _auto_data(args), args.forget or "forget10", args.retain or "retain90"
        return TrainingSets(load_qa_split(data, forget), load_qa_split(data, retain), forget, retain, data)
    return get_benchmark(args.benchmark).training_sets(args.data, args.forget, args.retain)


def load_eval_sets_for(args: argparse.Namespace) -> EvalSets:
    """The eval sets and roles named by ``--benchmark``/``--data``/``--forget``/``--retain``."""
    if args.benchmark == "auto":
        from ..evaluation import default_roles, load_eval_sets

        data = _auto_data(args)
        roles = default_roles(data, args.forget or "forget10", args.retain or "retain90")
        return EvalSets(load_eval_sets(data, roles), roles, data=data)
    return get_benchmark(args.benchmark).eval_sets(args.data, args.forget, args.retain)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder of the run")
    parser.add_argument("--overwrite", action="store_true", help="replace an output folder that holds a finished run")


def add_prompt_format_arguments(parser: argparse.ArgumentParser) -> None:
    """``--prompt-style``/``--system-prompt``/``--chat-date-string`` (with ``--chat-template``: the
    :class:`~grin_unlearn.data.formatting.PromptFormat` of a run)."""
    parser.add_argument("--prompt-style", choices=STYLES, default=None,
                        help="tokenisation of question + answer: tofu = the reference TOFU tokenisation of "
                             "open-unlearning (one string, labels after the prompt's own token count; default), "
                             "split = prompt and answer tokenised apart (this project's earlier format). "
                             "Default: the format recorded in the model folder, else tofu")
    parser.add_argument("--prompt-template", default=None,
                        help="plain prompt with {question} (default 'Question: {question}\\nAnswer: '; the reference "
                             "formats Llama-2-chat models as '[INST] {question} [/INST]')")
    parser.add_argument("--system-prompt", default=None,
                        help="system message with --chat-template (default: 'You are a helpful assistant.', as the "
                             "reference's chat-model configs; '' for none)")
    parser.add_argument("--chat-date-string", default=None,
                        help="date_string for chat templates that print one (the reference's Llama-3.1 config: "
                             "'10 Apr 2025')")


def prompt_format_from_args(args: argparse.Namespace, max_length: int | None = None) -> PromptFormat:
    """The prompt format of a command: the one recorded in ``--model``'s folder (``prompt_format.json``)
    when there is one, else the default, then every flag given on the command line over it."""
    model = Path(str(getattr(args, "model", "") or "")).expanduser()
    recorded = PromptFormat.load(model) if str(model) and model.is_dir() else None
    fmt = recorded or PromptFormat()
    template = getattr(args, "prompt_template", None)
    changes = {"style": getattr(args, "prompt_style", None),
               "template": template.replace("\\n", "\n") if template else None,  # a typed \n is a newline
               "system_prompt": getattr(args, "system_prompt", None),
               "date_string": getattr(args, "chat_date_string", None), "max_length": max_length}
    if getattr(args, "chat_template", False):
        changes["chat_template"] = True
    return replace(fmt, **{k: v for k, v in changes.items() if v is not None})
