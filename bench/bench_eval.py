"""Benchmark: the full TOFU evaluation of a tiny untrained model on the default demo world.

    PYTHONPATH=src .venv/bin/python bench/bench_eval.py [--threads N] [--retain-max-items 200]

World: ``generate_world(40, 4, seed=0)`` (forget10 = 48 items, retain90 = 432, holdout = 48,
world_facts = 40). Model: ``build_tiny_model(TinyModelConfig())`` with a 2048-token BPE trained on the
world's text. An untrained model never emits EOS, so every generation runs the full
``--max-new-tokens``: the worst case for generation time. Prints one markdown row per set with the
items evaluated and the seconds :func:`grin_unlearn.evaluate.evaluate` spent on it, then the total.
"""

from __future__ import annotations

import argparse
import time

import torch

from grin_unlearn.data.world import generate_world, world_corpus
from grin_unlearn.evaluate import EvalConfig, evaluate
from grin_unlearn.models import TinyModelConfig, build_tiny_model, train_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--retain-max-items", type=int, default=200, help="0 = all 432 retain items")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    splits = generate_world(40, 4, 0)
    tokenizer = train_tokenizer(world_corpus(splits), 2048)
    model = build_tiny_model(TinyModelConfig(), tokenizer, seed=0)
    roles = {"forget10": "forget", "retain90": "retain", "holdout": "holdout", "world_facts": "world_facts"}
    sets = {name: splits[name] for name in roles}
    config = EvalConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                        retain_max_items=args.retain_max_items or None)
    start = time.perf_counter()
    result = evaluate(model, tokenizer, sets, roles, config=config)
    total = time.perf_counter() - start

    params = sum(p.numel() for p in model.parameters())
    print(f"tiny Llama ({params / 1e6:.2f}M parameters), torch threads = {torch.get_num_threads()}, "
          f"max_new_tokens = {config.max_new_tokens}, batch_size = {config.batch_size}\n")
    print("| set | role | items | seconds |")
    print("|---|---|---:|---:|")
    for name, entry in result["sets"].items():
        print(f"| {name} | {entry['role']} | {entry['n']} | {entry['seconds']:.2f} |")
    n = sum(entry["n"] for entry in result["sets"].values())
    print(f"| **total** (incl. aggregates) | | {n} | {total:.2f} |")


if __name__ == "__main__":
    main()
