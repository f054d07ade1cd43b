"""Benchmark: the memory model (bench/memory_model.py) against measured peaks on this machine's CPU.

    PYTHONPATH=src .venv/bin/python bench/bench_memory.py [--sizes 10m 50m 100m] [--batch 4] [--seq 64]

Prints the predicted per-GPU table for Llama-2 7B / 13B / 70B under DDP and FSDP2, then, for random-init
Llamas of about 10M, 50M and 100M parameters (fp32, and 10M also in bf16), each step in its own
subprocess:

* **allocated**: the peak of the bytes held by torch's CPU allocator over the step (the sum of the
  allocation and free events of ``torch.profiler`` with ``profile_memory=True``, the CPU counterpart of
  ``torch.cuda.max_memory_allocated``) minus what was held before it (model, batches, masks);
* **RSS** (``--rss``, a second run of the step without the profiler, whose own buffers would count):
  peak resident memory (``ru_maxrss``) minus the resident memory before the step. It adds the
  allocator's caching, numpy's scratch and the first use of kernels and thread pools, so it is an
  upper reference, not what the model predicts;
* **optimizer state**: the bytes the masked optimizer holds after two steps
  (:func:`memory_model.held_bytes`) against :meth:`memory_model.OptimizerLayout.state_bytes`.

**FSDP2** (``--fsdp2``, default 10m 50m): ``torchrun`` with 2 gloo processes on the CPU, each model
``fully_shard``-ed per decoder layer and at the root (torch's FSDP2), only the eligible weights
requiring gradients, one forward + backward over a 4x64-token batch per process that keeps the
(reduce-scattered, sharded) gradients: the allocated peak of each process against the ``backward`` row
of the model (sharded weights, the unsharded root, two gathered layers, activations, sharded
gradients). GRIN's own steps under FSDP2 (scoring into local shards, sharded selection and optimizer)
are not measured here until the library supports them; their prediction is in the table above.

``scoring`` runs what :func:`grin_unlearn.scoring.score_influence` and the selection do: ``G_f`` over 2
batches, ``G_r`` over 2 batches (both kept), the registered ``grin`` scorer, then
:func:`select_top_fraction`. ``training`` runs two steps of masked training the way the pipeline does:
a random top-p mask (made before the measured window), unselected tensors frozen, gradient-mask hooks,
the masked AdamW with weight decay, one forward/backward over forget + retain rows (2·B) with the
answer log-probs of :func:`grin_unlearn.scoring.gradients.batch_loss`. One process, so no DDP buckets.
``training-ckpt`` is the same with gradient checkpointing (``use_reentrant=False``, as
``--gradient-checkpointing`` sets it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import memory_model as mm  # noqa: E402

MIB = 1024 * 1024
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def llama_config(shape: mm.LlamaShape, seq: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                       num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                       num_key_value_heads=shape.kv_heads, max_position_embeddings=max(seq, 128),
                       tie_word_embeddings=shape.tied)


def build_model(shape: mm.LlamaShape, seq: int, dtype: torch.dtype, device: str = "cpu", seed: int = 0):
    """A random-initialised ``LlamaForCausalLM`` of ``shape`` in ``dtype`` on ``device`` (no download)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(llama_config(shape, seq))
    return model.to(dtype).eval()


def token_examples(vocab: int, rows: int, seq: int, seed: int) -> list[dict]:
    """``rows`` synthetic examples of ``seq`` random tokens, every token but the first scored."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (rows, seq), generator=gen).tolist()
    return [{"input_ids": row, "labels": [-100] + row[1:]} for row in ids]


def make_optimizer(model, masks: dict[str, torch.Tensor], lr: float = 1e-4, weight_decay: float = 0.01):
    """The pipeline's masked optimizer (:func:`grin_unlearn.training.masked_optim.make_masked_optimizer`):
    frozen unselected tensors, gradient-mask hooks (handles in ``optimizer.gradient_hooks``), masked AdamW."""
    from grin_unlearn.training.masked_optim import make_masked_optimizer

    return make_masked_optimizer(model, masks, lr=lr, weight_decay=weight_decay)


def mask_counts(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    """What the optimizer-state formula needs: selected weights, elements and number of the trainable
    tensors (those with a selected weight), and the most selected in one tensor."""
    counts = [(int(m.sum()), m.numel()) for m in masks.values() if bool(m.any())]
    return {"selected": sum(k for k, _ in counts), "trainable_elements": sum(n for _, n in counts),
            "k_max": max(k for k, _ in counts), "tensors": len(counts)}


def expected_state_bytes(optimizer, masks: dict[str, torch.Tensor]) -> int:
    """:meth:`OptimizerLayout.state_bytes` for this optimizer's layout and the actual mask counts."""
    c = mask_counts(masks)
    return mm.layout_of(optimizer).state_bytes(c["selected"], c["trainable_elements"], c["k_max"], c["tensors"])


class AllocatedPeak:
    """Peak bytes held by torch's CPU allocator inside the ``with`` block, over what it held before.

    ``enabled=False`` measures nothing (``peak`` stays 0): for the RSS runs."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.peak = enabled, 0

    def __enter__(self):
        if not self.enabled:
            return self
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc):
        if not self.enabled:
            return False
        self._prof.__exit__(*exc)
        events = sorted((e.start_ns(), e.nbytes()) for e in self._prof.profiler.kineto_results.events()
                        if e.name() == "[memory]")
        held = self.peak = 0
        for _, nbytes in events:
            held += nbytes
            self.peak = max(self.peak, held)
        return False


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not in /proc/self/status")


def child(step: str, name: str, dtype: str, batch: int, seq: int, ratio: float, profile: bool = True) -> dict:
    from grin_unlearn.data.formatting import PadCollator
    from grin_unlearn.scoring import ScoringContext, accumulate_example_gradients, eligible_parameters, get_scorer
    from grin_unlearn.scoring.gradients import batch_loss
    from grin_unlearn.selection import select_top_fraction

    shape = mm.SHAPES[name]
    model = build_model(shape, seq, DTYPES[dtype])
    forget, retain = token_examples(shape.vocab, 2 * batch, seq, 1), token_examples(shape.vocab, 2 * batch, seq, 2)
    collator = PadCollator(0)
    params = eligible_parameters(model)
    result: dict = {}
    if step == "scoring":
        base = _rss_mib()
        with AllocatedPeak(profile) as peak:
            gf = accumulate_example_gradients(model, forget, params, collator, batch_size=batch)
            gr = accumulate_example_gradients(model, retain, params, collator, batch_size=batch)
            with torch.no_grad():
                scores = get_scorer("grin")(ScoringContext(params, gf, gr))
            masks = select_top_fraction(scores, ratio)
        del masks
    else:
        if step == "training-ckpt":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        with torch.no_grad():
            masks = select_top_fraction(get_scorer("random")(ScoringContext(params)), ratio)
        rows = collator(forget[:batch] + retain[:batch])  # forget + retain groups in one forward, as the Trainer
        base = _rss_mib()
        with AllocatedPeak(profile) as peak:
            optimizer = make_optimizer(model, masks)
            model.train()
            for _ in range(2):
                batch_loss(model, rows).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        result.update(optimizer_bytes=mm.held_bytes(optimizer), optimizer_expected=expected_state_bytes(optimizer, masks))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {**result, "allocated_mib": peak.peak / MIB, "rss_mib": rss - base}


def fsdp2_child(name: str, batch: int, seq: int) -> None:
    """One gloo process of the FSDP2 measurement; prints its JSON line (see the module docstring)."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from grin_unlearn.data.formatting import PadCollator
    from grin_unlearn.scoring import eligible_parameters
    from grin_unlearn.scoring.gradients import batch_loss

    dist.init_process_group("gloo")
    shape = mm.SHAPES[name]
    model = build_model(shape, seq, torch.float32)
    model.requires_grad_(False)
    for param in eligible_parameters(model).values():
        param.requires_grad_(True)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    rows = PadCollator(0)(token_examples(shape.vocab, batch, seq, 1 + dist.get_rank()))
    with AllocatedPeak() as peak:
        batch_loss(model, rows).backward()
    print(json.dumps({"rank": dist.get_rank(), "world": dist.get_world_size(), "allocated_mib": peak.peak / MIB}))
    dist.destroy_process_group()


def measure_fsdp2(name: str, args, procs: int = 2) -> list[dict]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", __file__,
               "--fsdp2-child", name, "--batch", str(args.batch), "--seq", str(args.seq)]
    proc = subprocess.run(command, capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"rank"')]


def measure(step: str, name: str, dtype: str, args, profile: bool = True) -> dict:
    command = [sys.executable, __file__, "--child", step, name, dtype, "--batch", str(args.batch),
               "--seq", str(args.seq), "--ratio", str(args.ratio)] + ([] if profile else ["--no-profile"])
    # Fixed mmap threshold: large blocks go back to the OS when freed, so RSS follows the live tensors.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def predicted_over_model(name: str, dtype: str, step: str, args) -> float:
    """Predicted peak minus what exists before the measured window (weights; for training, the masks)."""
    w = torch.tensor([], dtype=DTYPES[dtype]).element_size()
    setup = mm.Setup(w=w, score_tokens=args.batch * args.seq, train_tokens=2 * args.batch * args.seq,
                     ratio=args.ratio, mode="single", checkpointing=step == "training-ckpt")
    return mm.peak_over_start(mm.predict(mm.SHAPES[name], setup), step.removesuffix("-ckpt"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="*", default=["10m", "50m", "100m"], choices=["10m", "50m", "100m"])
    parser.add_argument("--bf16", nargs="*", default=["10m"], choices=["10m", "50m", "100m"],
                        help="sizes also measured in bf16")
    parser.add_argument("--batch", type=int, default=4, help="rows per batch")
    parser.add_argument("--seq", type=int, default=64, help="tokens per row")
    parser.add_argument("--ratio", type=float, default=0.4, help="selected fraction p")
    parser.add_argument("--fsdp2", nargs="*", default=["10m", "50m"], choices=["10m", "50m", "100m"],
                        help="sizes measured under FSDP2 (2 gloo processes)")
    parser.add_argument("--fsdp2-child", help=argparse.SUPPRESS)
    parser.add_argument("--rss", action="store_true", help="also run each step without the profiler for its RSS")
    parser.add_argument("--no-profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, metavar=("STEP", "SIZE", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.fsdp2_child:
        return fsdp2_child(args.fsdp2_child, args.batch, args.seq)
    if args.child:
        print(json.dumps(child(*args.child, args.batch, args.seq, args.ratio, profile=not args.no_profile)))
        return

    print(mm.table(ratio=args.ratio), "\n")
    print(f"Measured on this machine: CPU, random-init Llama, batch {args.batch}x{args.seq} tokens (training: "
          f"forget + retain, 2x), p={args.ratio}, 1 thread. MiB over what exists before the step.\n")
    print("| model | P | E | dtype | step | predicted | allocated | allocated / predicted | RSS / predicted "
          "| optimizer state: held / formula |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    runs = [(name, "fp32") for name in args.sizes] + [(name, "bf16") for name in args.bf16]
    for name, dtype in runs:
        shape = mm.SHAPES[name]
        for step in ("scoring", "training", "training-ckpt"):
            pred = predicted_over_model(name, dtype, step, args) / MIB
            got = measure(step, name, dtype, args)
            rss = f"{measure(step, name, dtype, args, profile=False)['rss_mib'] / pred:.2f}" if args.rss else "—"
            opt = (f"{got['optimizer_bytes'] / MIB:.2f} / {got['optimizer_expected'] / MIB:.2f}"
                   if step != "scoring" else "")
            print(f"| {name.upper()} | {shape.params / 1e6:.1f}M | {shape.eligible / 1e6:.1f}M | {dtype} | {step} "
                  f"| {pred:.0f} | {got['allocated_mib']:.0f} | {got['allocated_mib'] / pred:.2f} "
                  f"| {rss} | {opt} |", flush=True)
    if args.fsdp2:
        print(f"\nFSDP2 (torch fully_shard), 2 gloo processes on the CPU, fp32, one forward + backward over "
              f"{args.batch}x{args.seq} tokens per process keeping the eligible weights' sharded gradients. "
              "MiB over the local shards.\n")
        print("| model | P | E | predicted per process | allocated, rank 0 / rank 1 | allocated / predicted |")
        print("|---|---|---|---|---|---|")
    for name in args.fsdp2:
        shape = mm.SHAPES[name]
        setup = mm.Setup(w=4, score_tokens=args.batch * args.seq, ratio=args.ratio, mode="fsdp2", world=2)
        pred = mm.peak_over_start(mm.predict(shape, setup), "backward") / MIB
        ranks = sorted(measure_fsdp2(name, args), key=lambda r: r["rank"])
        got = " / ".join(f"{r['allocated_mib']:.0f}" for r in ranks)
        ratios = " / ".join(f"{r['allocated_mib'] / pred:.2f}" for r in ranks)
        print(f"| {name.upper()} | {shape.params / 1e6:.1f}M | {shape.eligible / 1e6:.1f}M | {pred:.0f} | {got} "
              f"| {ratios} |", flush=True)


if __name__ == "__main__":
    main()
