"""Benchmark: peak memory of GRIN scoring and masked training, predicted vs measured.

    PYTHONPATH=src .venv/bin/python bench/bench_memory.py [--sizes 10m 50m] [--batch 4] [--seq 64]

Prints two tables.

1. **Predicted per GPU** for Llama-shaped models of 1B / 7B / 70B parameters in bf16 (parameter counts
   taken from a ``LlamaForCausalLM`` built on the ``meta`` device, so no memory is used), for scoring
   and for masked training with DDP, with the formulas of :func:`predict` (also in docs/distributed.md).
2. **Measured on this machine** (CPU, fp32) for random-init Llamas of ~10M and ~50M parameters, each
   step in its own subprocess: the peak RSS (``ru_maxrss``) minus the RSS once the model and batches
   are built ("over model"), against the prediction of the same formula with 4-byte weights.

``scoring`` runs exactly what :func:`grin_unlearn.influence.score_influence` and the selection do:
``G_f`` over 2 batches, ``G_r`` over 2 batches (both fp32 accumulators kept), the registered ``grin``
scorer, then :func:`select_top_fraction`. ``training`` runs two steps of masked training the way
:class:`UnlearningTrainer` does: a random top-p mask, unselected tensors frozen, gradient-mask hooks,
:class:`MaskedAdamW` with weight decay, a forward/backward over a forget + retain batch (2·B rows).
No DDP here, so no gradient buckets (the prediction leaves them out for the measured rows).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch

MIB = 1024 * 1024
GIB = 1024**3

# name: (hidden, intermediate, layers, heads, kv_heads, vocab, tied) -- public Llama shapes for the
# predictions, small random-init shapes for the measurements.
SHAPES = {
    "1b": (2048, 8192, 16, 32, 8, 128256, True),  # Llama-3.2-1B
    "7b": (4096, 11008, 32, 32, 32, 32000, False),  # Llama-2-7B
    "70b": (8192, 28672, 80, 64, 8, 128256, False),  # Llama-3-70B
    "10m": (256, 688, 8, 4, 4, 8000, False),
    "50m": (512, 1376, 10, 8, 8, 16000, False),
}


def llama_config(name: str, seq: int):
    from transformers import LlamaConfig

    hidden, inter, layers, heads, kv, vocab, tied = SHAPES[name]
    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=max(seq, 128),
                       tie_word_embeddings=tied)


def counts(name: str, seq: int = 128) -> dict:
    """Parameter counts of the model, from a meta-device build: total P, eligible E, largest eligible."""
    from transformers import LlamaForCausalLM

    from grin_unlearn.scoring import eligible_parameters

    with torch.device("meta"):
        model = LlamaForCausalLM(llama_config(name, seq))
    eligible = eligible_parameters(model)
    hidden, inter, layers, *_ , vocab, _ = SHAPES[name]
    return {"P": sum(p.numel() for p in model.parameters()), "E": sum(p.numel() for p in eligible.values()),
            "largest": max(p.numel() for p in eligible.values()), "hidden": hidden, "inter": inter,
            "layers": layers, "vocab": vocab}


BACKWARD_FACTOR = 2  # peak of a forward + backward over the saved activations alone (calibrated, see below)


def activations(c: dict, tokens: int, w: int) -> float:
    """Peak bytes of a forward + backward: ``2 · tokens · (L·34·h·w/2 + V·(w + 8))``.

    The bracket is what autograd saves: per layer ``34·s·b·h`` bytes in 16-bit (Korthikanti et al.,
    "Reducing Activation Recomputation in Large Transformer Models", arXiv 2205.05198, without the
    ``5·a·s/h`` attention-score term, which SDPA / FlashAttention do not store), scaled by ``w/2`` for
    other widths, plus the logits (model dtype), their fp32 log-softmax and its gradient. Counting the
    saved tensors of the 50M model below (``torch.autograd.graph.saved_tensors_hooks``, weights
    excluded) gives 106 MiB for 256 tokens against 132 MiB from the bracket; the peak RSS of a
    gradient pass over that one batch is 2x larger (backward's gradient buffers live alongside the
    saved tensors), hence ``BACKWARD_FACTOR``: an empirical factor from these CPU runs, not a law.
    """
    return BACKWARD_FACTOR * tokens * (c["layers"] * 34 * c["hidden"] * w / 2 + c["vocab"] * (w + 8))


def predict(c: dict, w: int, score_tokens: int, train_tokens: int, ratio: float, ddp: bool = True,
            over_model: bool = False) -> dict:
    """Peak bytes of scoring and of masked training (weights excluded when ``over_model``).

    scoring  = W + max(8E + g + A_s, 13E)   gradient passes: fp32 G_f and G_r (8 B per eligible weight),
                                             one gradient g (largest eligible tensor) and activations A_s;
                                             scorer + selection: + fp32 scores (4E) + bool masks (1E)
    offload  = W + g + A_s                   accumulator_device="cpu": the 13E live in host RAM instead
    training = W + w·E (+ w·E DDP buckets) + 12·p·E + 1·E + A_t
                                             gradients of the trainable tensors (≈ every eligible one),
                                             MaskedAdamW's fp32 moments and int32 indices of the p·E
                                             selected weights, the bool mask, activations of the
                                             forget + retain batch
    with W = w·P, w = bytes per weight (2 for bf16, 4 for fp32).
    """
    weights = 0 if over_model else w * c["P"]
    E = c["E"]
    act_s, act_t = activations(c, score_tokens, w), activations(c, train_tokens, w)
    grad_one = w * c["largest"]
    return {
        "weights": w * c["P"],
        "scoring": weights + max(8 * E + grad_one + act_s, 13 * E),
        "scoring_offload": weights + grad_one + act_s,
        "training": weights + w * E * (2 if ddp else 1) + 12 * ratio * E + E + act_t,
        "act_scoring": act_s,
        "act_training": act_t,
    }


# --- measurement (one subprocess per step) -------------------------------------------------------


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not in /proc/self/status")


def _examples(vocab: int, batch: int, seq: int, count: int, seed: int) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (count * batch, seq), generator=gen).tolist()
    return [{"input_ids": row, "labels": [-100] + row[1:]} for row in ids]


def child(step: str, name: str, batch: int, seq: int, ratio: float) -> dict:
    from transformers import LlamaForCausalLM

    from grin_unlearn.data.formatting import PadCollator
    from grin_unlearn.scoring import ScoringContext, accumulate_example_gradients, get_scorer
    from grin_unlearn.scoring import eligible_parameters
    from grin_unlearn.selection import select_top_fraction

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(name, seq)).eval()
    vocab = SHAPES[name][5]
    forget, retain = _examples(vocab, batch, seq, 2, 1), _examples(vocab, batch, seq, 2, 2)
    collator = PadCollator(0)
    base = _rss_mib()
    if step == "scoring":
        params = eligible_parameters(model)
        gf = accumulate_example_gradients(model, forget, params, collator, batch_size=batch)
        gr = accumulate_example_gradients(model, retain, params, collator, batch_size=batch)
        with torch.no_grad():
            scores = get_scorer("grin")(ScoringContext(params, gf, gr))
        masks = select_top_fraction(scores, ratio)
        del masks
    else:
        from grin_unlearn.training.masked_optim import make_masked_optimizer

        params = eligible_parameters(model)
        with torch.no_grad():
            masks = select_top_fraction(get_scorer("random")(ScoringContext(params)), ratio)
        optimizer = make_masked_optimizer(model, masks, lr=1e-4, weight_decay=0.01)
        model.train()
        rows = collator(forget[:batch] + retain[:batch])  # forget + retain groups in one forward, as the Trainer does
        for _ in range(2):
            out = model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"], labels=rows["labels"])
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"peak_mib": peak, "over_model_mib": peak - base}


def measure(step: str, name: str, args) -> dict:
    command = [sys.executable, __file__, "--child", step, name, "--batch", str(args.batch), "--seq", str(args.seq),
               "--ratio", str(args.ratio)]
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="*", default=["10m", "50m"], choices=["10m", "50m"])
    parser.add_argument("--batch", type=int, default=4, help="measured runs: rows per batch")
    parser.add_argument("--seq", type=int, default=64, help="measured runs: tokens per row")
    parser.add_argument("--ratio", type=float, default=0.4, help="selected fraction p")
    parser.add_argument("--gpu-batch", type=int, default=8, help="predictions: rows per batch (score_batch_size)")
    parser.add_argument("--gpu-seq", type=int, default=128, help="predictions: tokens per row (max_length)")
    parser.add_argument("--child", nargs=2, metavar=("STEP", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.batch, args.seq, args.ratio)))
        return

    score_tokens, train_tokens = args.gpu_batch * args.gpu_seq, 2 * args.gpu_batch * args.gpu_seq
    print(f"Predicted peak per GPU, bf16 weights, DDP, p={args.ratio}, scoring batch {args.gpu_batch}x{args.gpu_seq} "
          f"tokens, training batch 2x{args.gpu_batch}x{args.gpu_seq} (forget + retain). GiB.\n")
    print("| model | P | eligible E | weights | activations (score) | scoring | scoring, accumulators on CPU "
          "| host RAM for CPU accumulators | masked training |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("1b", "7b", "70b"):
        c = counts(name)
        pred = predict(c, 2, score_tokens, train_tokens, args.ratio)
        print(f"| {name.upper()} | {c['P'] / 1e9:.2f}B | {c['E'] / 1e9:.2f}B | {pred['weights'] / GIB:.1f} "
              f"| {pred['act_scoring'] / GIB:.2f} | {pred['scoring'] / GIB:.1f} | {pred['scoring_offload'] / GIB:.1f} "
              f"| {13 * c['E'] / GIB:.1f} | {pred['training'] / GIB:.1f} |")

    print(f"\nMeasured on this machine: CPU, fp32, random-init Llama, batch {args.batch}x{args.seq}, p={args.ratio}, "
          "1 thread. MiB over the model (peak RSS minus RSS after building model and batches).\n")
    print("| model | P | eligible E | step | predicted | measured | measured / predicted |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sizes:
        c = counts(name, args.seq)
        pred = predict(c, 4, args.batch * args.seq, 2 * args.batch * args.seq, args.ratio, ddp=False, over_model=True)
        for step in ("scoring", "training"):
            got = measure(step, name, args)
            print(f"| {name.upper()} | {c['P'] / 1e6:.1f}M | {c['E'] / 1e6:.1f}M | {step} | {pred[step] / MIB:.0f} "
                  f"| {got['over_model_mib']:.0f} | {got['over_model_mib'] * MIB / pred[step]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
