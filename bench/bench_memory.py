"""Benchmark: the memory model (bench/memory_model.py) against measured peaks on this machine's CPU.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python bench/bench_memory.py [--repeat 2] [--explain]
        [--sizes 10m 50m 100m] [--bf16 10m] [--fsdp2 10m 50m 90m 100m] [--batch 4] [--seq 64] [--rss]

Prints the predicted per-GPU table for Llama-2 7B / 13B / 70B under DDP and FSDP2, then measures
random-init Llamas of about 10M, 50M and 100M parameters (fp32; 10M also in bf16; under FSDP2 also
``90m``, the 100M shape with a 4,000-token vocabulary, whose small root moves the FSDP2 peak to
another phase) on the CPU, each step of ``bench/memory_steps.py`` in fresh processes, and prints
measured / predicted:

* **one process**: ``scoring`` (``G_f`` over 2 batches, ``G_r`` over 2 batches, the ``grin`` scorer,
  top-p selection), ``training`` (two masked steps over forget + retain rows, 2·B) and
  ``training-ckpt`` (the same with gradient checkpointing, ``use_reentrant=False`` as
  ``--gradient-checkpointing`` sets it). Mode ``single`` of the model: no DDP buckets;
* **FSDP2** (``torchrun``, 2 gloo processes, fp32, the pipeline's ``shard_model``): ``scoring``
  (each process one forget and one retain batch), ``training`` (the masked steps on the local
  shards) and ``backward`` (one forward + backward keeping the sharded gradients), on each process
  against mode ``fsdp2``, ``world=2``, ``backend="gloo"``.

**Measured** is the peak of the bytes held by torch's CPU allocator during the step, counted on every
thread (:class:`allocator_trace.AllocatorPeak`; ``torch.profiler``'s memory events miss the frees
that gloo's threads make), minus what was held when the step began: the model, batches and, for
training, the masks. **Predicted** is :func:`memory_model.peak_over_start` of the same step.
``--repeat N`` measures every step N times (ranges in the table). ``--explain`` prints, under each
row, the terms of the predicted peak. ``--rss`` adds the peak resident memory of a second run
(``ru_maxrss`` over the start, glibc told to unmap freed large blocks): it includes the allocator's
slack, numpy's scratch and the first use of kernels, so it is an upper reference, not what the model
predicts. The optimizer column is the bytes the masked optimizer holds after two steps
(:func:`memory_steps.held_bytes`) over :meth:`memory_model.OptimizerLayout.state_bytes` of the masks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import memory_model as mm  # noqa: E402
import memory_table  # noqa: E402
import memory_steps as ms  # noqa: E402

MIB = 1024 * 1024
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SINGLE_STEPS = ("scoring", "training", "training-ckpt")
FSDP2_STEPS = ("scoring", "training", "backward")
SIZES = ("10m", "50m", "90m", "100m")


def _rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not in /proc/self/status")


def run_step(step: str, name: str, dtype: torch.dtype, batch: int, seq: int, ratio: float,
             measure: bool = True) -> dict:
    """Build the model (sharded when a process group exists), run ``step`` once; bytes over its start."""
    import torch.distributed as dist

    from grin_unlearn.data.formatting import PadCollator
    from grin_unlearn.scoring import eligible_parameters

    device = torch.device("cpu")
    shape = mm.SHAPES[name]
    model = ms.build_model(shape, seq, dtype)
    if dist.is_initialized():
        ms.shard(model, device)
    if step == "training-ckpt":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = eligible_parameters(model)
    collator = PadCollator(0)
    forget = ms.token_examples(shape.vocab, 2 * batch, seq, 1)
    retain = ms.token_examples(shape.vocab, 2 * batch, seq, 2)
    result: dict = {}
    if step.startswith("training"):
        masks = ms.random_masks(params, ratio)
        rows = collator(forget[:batch] + retain[:batch])  # forget + retain groups in one forward, as the Trainer
    elif step == "backward":
        rows = collator(forget[:batch])
    start_rss = _rss_mib()
    peak = ms.PeakMemory(device) if measure else None
    with peak or contextlib.nullcontext():
        if step == "scoring":
            ms.score_and_select(model, params, forget, retain, collator, batch, ratio, device)
        elif step == "backward":
            ms.backward_pass(model, params, rows)
        else:
            optimizer = ms.train_steps(model, masks, rows)
    if step.startswith("training"):
        result.update(optimizer_bytes=ms.held_bytes(optimizer), optimizer_expected=ms.expected_state_bytes(optimizer, masks),
                      layout=mm.layout_of(optimizer).name)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {**result, "allocated": peak.peak if peak else 0, "rss_mib": rss - start_rss}


def fsdp2_child(step: str, name: str, args) -> None:
    """One gloo process of the FSDP2 measurement; prints its JSON line."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    result = run_step(step, name, torch.float32, args.batch, args.seq, args.ratio)
    print(json.dumps({"rank": dist.get_rank(), "world": dist.get_world_size(), **result}), flush=True)
    dist.destroy_process_group()


def measure_single(step: str, name: str, dtype: str, args, profile: bool = True) -> dict:
    command = [sys.executable, __file__, "--child", step, name, dtype, "--batch", str(args.batch),
               "--seq", str(args.seq), "--ratio", str(args.ratio)] + ([] if profile else ["--no-profile"])
    # Fixed mmap threshold: large blocks go back to the OS when freed, so RSS follows the live tensors.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "GRIN_UNLEARN_QUIET": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{step} {name} {dtype} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_fsdp2(step: str, name: str, args, procs: int = 2) -> list[dict]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", __file__,
               "--fsdp2-child", step, name, "--batch", str(args.batch), "--seq", str(args.seq),
               "--ratio", str(args.ratio)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRIN_UNLEARN_QUIET": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"FSDP2 {step} {name} failed:\n{proc.stderr[-3000:]}")
    ranks = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"rank"')]
    return sorted(ranks, key=lambda r: r["rank"])


def setup_of(step: str, dtype: str, args, mode: str = "single", world: int = 1) -> mm.Setup:
    w = torch.tensor([], dtype=DTYPES[dtype]).element_size()
    return mm.Setup(w=w, score_tokens=args.batch * args.seq, train_tokens=2 * args.batch * args.seq,
                    ratio=args.ratio, mode=mode, world=world, backend="gloo",
                    checkpointing=step == "training-ckpt")


def _span(values: list[float], fmt: str = "{:.0f}") -> str:
    low, high = min(values), max(values)
    return fmt.format(low) if fmt.format(low) == fmt.format(high) else f"{fmt.format(low)}–{fmt.format(high)}"


def _explain(shape: mm.LlamaShape, setup: mm.Setup, step: str) -> str:
    """``step``'s predicted peak as its phase and terms, MiB: ``phase: a + b + … − what is held before it``."""
    terms = dict(mm.peak_terms(shape, setup)[step])
    phase = terms.pop("phase")
    parts = " + ".join(f"{k} {v / MIB:.1f}" for k, v in terms.items() if v)
    return f"{phase}: {parts} − held before {mm.held_before(mm.predict(shape, setup), step) / MIB:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="*", default=["10m", "50m", "100m"], choices=SIZES)
    parser.add_argument("--bf16", nargs="*", default=["10m"], choices=SIZES, help="sizes also measured in bf16")
    parser.add_argument("--fsdp2", nargs="*", default=["10m", "50m", "90m", "100m"], choices=SIZES,
                        help="sizes measured under FSDP2 (2 gloo processes)")
    parser.add_argument("--batch", type=int, default=4, help="rows per batch")
    parser.add_argument("--seq", type=int, default=64, help="tokens per row")
    parser.add_argument("--ratio", type=float, default=0.4, help="selected fraction p")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per step (the table shows their range)")
    parser.add_argument("--explain", action="store_true", help="print the terms of each predicted peak")
    parser.add_argument("--rss", action="store_true", help="also run each one-process step for its peak RSS")
    parser.add_argument("--no-profile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, metavar=("STEP", "SIZE", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--fsdp2-child", nargs=2, metavar=("STEP", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.fsdp2_child:
        return fsdp2_child(*args.fsdp2_child, args)
    if args.child:
        step, name, dtype = args.child
        print(json.dumps(run_step(step, name, DTYPES[dtype], args.batch, args.seq, args.ratio,
                                  measure=not args.no_profile)))
        return

    started = time.perf_counter()
    print(memory_table.table(ratio=args.ratio), "\n")
    print(f"Measured on this machine: CPU, random-init Llama, batch {args.batch}x{args.seq} tokens (training: "
          f"forget + retain, 2x), p={args.ratio}, 1 thread, {args.repeat} run(s) per step. MiB over what is "
          "held before the step.\n")
    rss_column = (" RSS / predicted |", "---|") if args.rss else ("", "")
    print("| model | P | E | mode | dtype | step | predicted | measured | measured / predicted |" + rss_column[0]
          + " optimizer state: held / formula |")
    print("|---|---|---|---|---|---|---|---|---|" + rss_column[1] + "---|")
    notes = []
    runs = ([("single", name, "fp32", step) for name in args.sizes for step in SINGLE_STEPS]
            + [("single", name, "bf16", step) for name in args.bf16 for step in SINGLE_STEPS]
            + [("fsdp2", name, "fp32", step) for name in args.fsdp2 for step in FSDP2_STEPS])
    for mode, name, dtype, step in runs:
        shape = mm.SHAPES[name]
        setup = setup_of(step, dtype, args, mode, world=2 if mode == "fsdp2" else 1)
        pred = mm.peak_over_start(mm.predict(shape, setup), step.removesuffix("-ckpt")) / MIB
        got = []  # one dict per run (FSDP2: per run and process)
        for _ in range(args.repeat):
            got += measure_fsdp2(step, name, args) if mode == "fsdp2" else [measure_single(step, name, dtype, args)]
        measured = [g["allocated"] / MIB for g in got]
        rss = ""
        if args.rss:
            rss = " — |" if mode == "fsdp2" else \
                f" {measure_single(step, name, dtype, args, profile=False)['rss_mib'] / pred:.2f} |"
        opt = ""
        if step.startswith("training"):
            opt = _span([g["optimizer_bytes"] / MIB for g in got], "{:.2f}") + " / " + \
                  _span([g["optimizer_expected"] / MIB for g in got], "{:.2f}")
        label = "FSDP2 ×2" if mode == "fsdp2" else "one process"
        print(f"| {name.upper()} | {shape.params / 1e6:.1f}M | {shape.eligible / 1e6:.1f}M | {label} | {dtype} | {step} "
              f"| {pred:.0f} | {_span(measured)} | {_span([m / pred for m in measured], '{:.2f}')} |{rss} {opt} |",
              flush=True)
        notes.append(f"- {name.upper()} {label} {dtype} {step}: {_explain(shape, setup, step.removesuffix('-ckpt'))}")
    if args.explain:
        print("\nPredicted peaks, term by term (MiB):\n\n" + "\n".join(notes))
    print(f"\nWall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
