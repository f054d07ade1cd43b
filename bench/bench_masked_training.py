"""Optimizer-state bytes and step time: masked AdamW (GRIN, p = 0.2 / 0.4) against full AdamW.

    .venv/bin/python bench/bench_masked_training.py [--hidden 512 --layers 8 --steps 10]

A random-init Llama, random tokens, random masks of exact density p over the block weights (the
eligible set). Both optimizers see the same batches; one table row per setting.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from grin_unlearn.training.masked_optim import MaskedAdamW, freeze_unselected, optimizer_state_bytes, register_gradient_masks
from grin_unlearn.scoring import eligible_parameters
from grin_unlearn.selection import select_top_fraction


def build(args):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=int(args.hidden * 2.75),
                         num_hidden_layers=args.layers, num_attention_heads=8, num_key_value_heads=8)
    return LlamaForCausalLM(config)


def run(args, ratio: float | None) -> dict:
    model = build(args)
    batches = [torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(i))
               for i in range(args.steps + 2)]
    if ratio is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
        hooks = []
    else:
        params = eligible_parameters(model)
        scores = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(i)) for i, (n, p) in enumerate(params.items())}
        masks = select_top_fraction(scores, ratio)
        trainable = freeze_unselected(params, masks, dict(model.named_parameters()))
        hooks = register_gradient_masks(trainable, masks)
        optimizer = MaskedAdamW(list(trainable.values()), {p: masks[n] for n, p in trainable.items()}, lr=1e-4,
                                weight_decay=0.01)
    times = []
    for i, ids in enumerate(batches):
        start = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 2:  # warm-up steps excluded
            times.append(time.perf_counter() - start)
    for handle in hooks:
        handle.remove()
    return {"params": sum(p.numel() for p in model.parameters()), "state": optimizer_state_bytes(optimizer),
            "step": sum(times) / len(times)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    rows = [("full AdamW", run(args, None))] + [(f"GRIN masked AdamW, p={p}", run(args, p)) for p in (0.2, 0.4)]
    full = rows[0][1]
    print(f"model: {full['params'] / 1e6:.1f}M parameters, batch {args.batch}x{args.seq}, {args.steps} timed steps, "
          f"{torch.get_num_threads()} threads")
    print("| optimizer | state MiB | state vs full | step s | step vs full |")
    print("|---|---|---|---|---|")
    for name, row in rows:
        print(f"| {name} | {row['state'] / 2**20:.1f} | {row['state'] / full['state']:.2f} | {row['step']:.3f} | "
              f"{row['step'] / full['step']:.2f} |")


if __name__ == "__main__":
    main()
