"""Where one unlearning step of the real model spends its time, and what cutting the LM head saves.

    OMP_NUM_THREADS=2 .venv/bin/python bench/profile_real_step.py [--steps 5]

One NPO + retain-NLL step at batch 4 forget + 4 retain rows (the trainer's one forward over both groups)
on the real benchmark's SmolLM2-135M target, every weight trainable, AdamW: seconds of the forward
(with the loss), the backward and the optimizer step, medians over ``--steps`` steps after one warm-up,
in fp32 and under bf16 autocast, with the LM head over every position (``full``) and from the column
before the batch's first labelled token (``cut``, what the trainer does: ``logits_to_keep``). The
reference log-probabilities of NPO are precomputed once before training, as in the trainer.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time

import torch

from grin_unlearn.data.formatting import PadCollator, PromptFormat, encode_training_records
from grin_unlearn.data.records import load_qa_split
from grin_unlearn.experiments.real_benchmark import RealBenchmarkConfig, prepare_real
from grin_unlearn.logprobs import IGNORE_INDEX, sequence_logprobs
from grin_unlearn.models import load_model, load_tokenizer


def step_times(model, batch, ref_logp, cut: bool, bf16: bool, steps: int) -> dict[str, float]:
    model = copy.deepcopy(model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    labels = batch["labels"]
    scored = labels != IGNORE_INDEX
    offset = max(int(torch.where(scored.any(1), scored.float().argmax(1), labels.shape[1]).min()) - 1, 0) if cut else 0
    keep = {"logits_to_keep": labels.shape[1] - offset} if offset else {}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = {"forward": [], "backward": [], "optimizer": []}
    for step in range(steps + 1):
        start = time.perf_counter()
        with autocast:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **keep).logits
        logp = sequence_logprobs(logits.float(), labels[:, offset:]).sum  # (8,): 4 forget, 4 retain rows
        ratio = logp[:4] - ref_logp
        loss = -(2 / 0.1) * torch.nn.functional.logsigmoid(-0.1 * ratio).mean() - logp[4:].mean()
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        if step:  # the first step warms the allocator and the optimizer state
            for key, value in (("forward", forward - start), ("backward", backward - forward), ("optimizer", end - backward)):
                times[key].append(value)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    assets = prepare_real(RealBenchmarkConfig())
    tokenizer, fmt = load_tokenizer(assets.target), PromptFormat.load(assets.target)
    model = load_model(assets.target)
    records = load_qa_split(assets.world, "forget01")[:4] + load_qa_split(assets.world, "retain90")[:4]
    batch = PadCollator(tokenizer.pad_token_id)(encode_training_records(tokenizer, records, fmt))
    with torch.no_grad():
        ref_logp = sequence_logprobs(model(input_ids=batch["input_ids"][:4], attention_mask=batch["attention_mask"][:4]).logits,
                                     batch["labels"][:4]).sum
    scored = int((batch["labels"] != IGNORE_INDEX).sum())
    print(f"torch threads {torch.get_num_threads()}; batch 8 × {batch['input_ids'].shape[1]} tokens, {scored} labelled; "
          f"median of {args.steps} steps\n")
    print("| precision | LM head | forward s | backward s | optimizer s | step s | step / full step |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for bf16 in (False, True):
        full = None
        for cut in (False, True):
            t = step_times(model, batch, ref_logp, cut, bf16, args.steps)
            total = sum(t.values())
            full = full or total
            print(f"| {'bf16' if bf16 else 'fp32'} | {'cut' if cut else 'full'} | {t['forward']:.3f} | {t['backward']:.3f} | "
                  f"{t['optimizer']:.3f} | {total:.3f} | {total / full:.2f} |", flush=True)


if __name__ == "__main__":
    main()
