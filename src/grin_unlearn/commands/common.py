"""Arguments shared by several sub-commands (model, data, output folder)."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True, max_length: bool = True) -> None:
    parser.add_argument("--model", required=required, help="local model folder (save_pretrained) or Hub id")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow custom modelling code from the model repo (off by default)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights dtype (auto: bf16 on a GPU that supports it, else fp32)")
    parser.add_argument("--chat-template", action="store_true",
                        help="format prompts with the tokenizer's chat template instead of 'Question: …\\nAnswer:'")
    if max_length:  # commands with a TrainConfig get --max-length from it
        parser.add_argument("--max-length", type=int, default=128, help="max tokens per example (longer ones are truncated)")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="folder of <split>.json/.jsonl files (TOFU schema) or a Hub dataset id (locuslab/TOFU)")
    parser.add_argument("--forget", default="forget10", help="forget split name (default: forget10)")
    parser.add_argument("--retain", default="retain90", help="retain split name (default: retain90)")


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder of the run")
    parser.add_argument("--overwrite", action="store_true", help="replace an output folder that holds a finished run")
