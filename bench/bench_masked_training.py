"""Masked AdamW (GRIN, p = 0.1 / 0.2 / 0.4) against torch's AdamW: optimizer step, training step, state.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_masked_training.py [--sizes 10M 100M --steps 8]

For each model size, a random-init Llama and random tokens; the masks are the exact top-p of random
scores over the block weights (the eligible set), so every block tensor has density ≈ p. Each row
trains its own copy of the model on the same batches; the rows take their steps in turn (round-robin),
so a slower moment of a shared machine hits every row alike, and the ratios come from one run.

Columns: ``opt step`` is ``optimizer.step()`` alone; ``train step`` is forward + backward (which runs
the gradient-mask hooks of the masked rows) + ``optimizer.step()``; medians over the timed steps, in
CPU seconds of this process (``time.process_time``, user + system): run with one thread, as below, it
is the wall time an idle machine would show, and it does not count the time other jobs on a shared
machine take the core away.
``state`` is every tensor the optimizer holds (moments, steps, and for the masked optimizer its int32
indices and fp32 scratch); ``masks`` is the bool masks the gradient hooks hold (the selection itself,
which a run keeps anyway to save it). The baseline is torch's default AdamW (on CPU: the single-tensor
loop); torch's fused CPU AdamW is listed as a second reference.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from grin_unlearn.training.masked_optim import MaskedAdamW, make_masked_optimizer
from grin_unlearn.scoring import eligible_parameters
from grin_unlearn.selection.top_fraction import select_top_fraction

SIZES = {"10M": (256, 8), "100M": (768, 12)}  # (hidden, layers); vocab 8000, intermediate 2.75·hidden


def build(size: str, vocab: int) -> LlamaForCausalLM:
    hidden, layers = SIZES[size]
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 2.75),
                         num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=8)
    return LlamaForCausalLM(config)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor the optimizer holds: its per-parameter state, and for MaskedAdamW its
    index layout and scratch buffers."""
    tensors = [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
    if isinstance(optimizer, MaskedAdamW):
        tensors += [i for i in optimizer.indices.values() if i is not None]
        tensors += [b for pair in optimizer._scratch.values() for b in pair]
    return sum(t.numel() * t.element_size() for t in tensors)


def make_row(model, ratio: float | None, fused: bool = False) -> dict:
    """One contender: its own copy of the model and its optimizer."""
    model = copy.deepcopy(model)
    mask_bytes = 0
    if ratio is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=fused or None)
    else:
        params = eligible_parameters(model)
        scores = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(i))
                  for i, (n, p) in enumerate(params.items())}
        masks = select_top_fraction(scores, ratio)
        optimizer = make_masked_optimizer(model, masks, lr=1e-4, weight_decay=0.01)
        mask_bytes = sum(m.numel() for m in masks.values())
    return {"model": model, "optimizer": optimizer, "masks": mask_bytes, "opt": [], "train": []}


def train_step(row: dict, ids: torch.Tensor, timed: bool) -> None:
    model, optimizer = row["model"], row["optimizer"]
    start = time.process_time()
    model(input_ids=ids, labels=ids).loss.backward()
    middle = time.process_time()
    optimizer.step()
    end = time.process_time()
    optimizer.zero_grad(set_to_none=True)
    if timed:
        row["opt"].append(end - middle)
        row["train"].append(end - start)


def bench_size(size: str, args) -> list[tuple]:
    base = build(size, args.vocab)
    contenders = [("torch AdamW (default)", None, False), ("torch AdamW (fused=True)", None, True)]
    contenders += [(f"GRIN masked AdamW, p={p}", p, False) for p in args.ratios]
    rows = {name: make_row(base, ratio, fused) for name, ratio, fused in contenders}
    del base
    for i in range(args.warmup + args.steps):
        ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(i))
        for row in rows.values():
            train_step(row, ids, timed=i >= args.warmup)
    params = sum(p.numel() for p in rows[contenders[0][0]]["model"].parameters())
    full = rows[contenders[0][0]]
    full_opt, full_train = statistics.median(full["opt"]), statistics.median(full["train"])
    full_state = optimizer_state_bytes(full["optimizer"])
    table = []
    for name, row in rows.items():
        opt, train = statistics.median(row["opt"]), statistics.median(row["train"])
        state = optimizer_state_bytes(row["optimizer"])
        table.append((f"{params / 1e6:.0f}M", name, state / 2**20, state / full_state, row["masks"] / 2**20,
                      opt, opt / full_opt, train, train / full_train))
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.1, 0.2, 0.4])
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    print(f"batch {args.batch}x{args.seq}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")
    print("| model | optimizer | state MiB | state vs default | masks MiB | opt step s | opt step vs default "
          "| train step s | train step vs default |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for model, name, state, state_ratio, masks, opt, opt_ratio, train, train_ratio in bench_size(size, args):
            print(f"| {model} | {name} | {state:.1f} | {state_ratio:.2f} | {masks:.1f} | {opt:.3f} | {opt_ratio:.2f} "
                  f"| {train:.3f} | {train_ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
