"""Benchmark: influence gradient accumulation vs a plain forward+backward loop over the same batches.

    PYTHONPATH=src .venv/bin/python bench/bench_influence.py [--batches 4] [--repeats 2] [--threads 2]

Model: a randomly initialised ``LlamaForCausalLM`` built from ``LlamaConfig`` (default hidden 768,
intermediate 2048, 12 layers, 12 heads, vocab 10,000, untied embeddings: 100.3M parameters), fp32 on
the CPU, in eval mode. Data: ``--batches`` fixed batches of ``--batch-size`` x ``--seq`` random tokens,
every token after the first scored; the first half is the forget set, the second the retain set.

Methods, each over all the batches:

* ``plain``: for every batch, ``model(**batch).loss.backward()`` then ``model.zero_grad()``, with every
  parameter requiring grad (what a training step costs without the optimizer).
* ``accumulate``: :func:`grin_unlearn.scoring.accumulate_example_gradients` over the forget half, then
  over the retain half (two fp32 accumulator sets), default eligible weights (block matrices).
* ``accumulate-all``: the same with every parameter eligible (``include=["."]``): exactly the gradients
  the plain loop computes, so the pure cost of the accumulation machinery.

Timing (one process, one warm-up batch per method first): each round runs every method on the forget
half, then every method on the retain half, the method order rotating from round to round, so that load
from other jobs on a shared machine hits all methods alike. Per round, a method's time is the sum of
its two halves and its ratio is divided by the plain time *of the same round*; the table gives the
median over ``--repeats`` rounds of both, and CPU seconds (``time.process_time``) beside wall seconds.

Peak RSS: each method also runs once (one forget and one retain batch, the peak does not grow with more
batches) in a fresh subprocess, so that one method's freed memory cannot hide another's peak; reported
are ``ru_maxrss`` and its increase over the RSS after the model and batches were built ("over model"):
activations plus the ``.grad`` set or the accumulators (both accumulator sets are kept, as GRIN needs
them together).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from grin_unlearn.data.formatting import PadCollator
from grin_unlearn.scoring import accumulate_example_gradients
from grin_unlearn.scoring import eligible_parameters

MIB = 1024 * 1024


def _rss_mib(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def build_model(args):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.heads, max_position_embeddings=args.seq,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def setup(args):
    """Model, examples, collator and batches, all seeded."""
    torch.set_num_threads(args.threads)
    model = build_model(args)
    gen = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(args.batches * args.batch_size):
        ids = torch.randint(0, args.vocab, (args.seq,), generator=gen).tolist()
        examples.append({"input_ids": ids, "labels": ids})
    return model, examples, PadCollator(0)


def method_runner(method: str, model, collate, batch_size: int):
    """A function running ``method`` over a list of examples (one 'half' of the data set)."""
    if method == "plain":
        def plain(examples):
            for start in range(0, len(examples), batch_size):
                model(**collate(examples[start : start + batch_size])).loss.backward()
                model.zero_grad(set_to_none=True)
        return plain
    params = eligible_parameters(model, include=["."] if method == "accumulate-all" else None)
    return lambda examples: accumulate_example_gradients(model, examples, params, collate, batch_size=batch_size)


def timing(args) -> dict[str, list[tuple[float, float]]]:
    """Per method, per round: (wall seconds, CPU seconds) over both halves."""
    model, examples, collate = setup(args)
    half = len(examples) // 2
    halves = [examples[:half], examples[half:]]
    runners = {m: method_runner(m, model, collate, args.batch_size) for m in METHODS}
    for run in runners.values():  # warm-up
        run(examples[: args.batch_size])
    rows: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
    for round_ in range(args.repeats):
        order = list(METHODS)[round_ % len(METHODS):] + list(METHODS)[: round_ % len(METHODS)]
        totals = {m: [0.0, 0.0] for m in METHODS}
        kept = []  # forget accumulators stay alive during the retain half, as in the pipeline
        for part in halves:
            for method in order:
                start, cpu_start = time.perf_counter(), time.process_time()
                kept.append(runners[method](part))
                totals[method][0] += time.perf_counter() - start
                totals[method][1] += time.process_time() - cpu_start
        del kept
        for method, (wall, cpu) in totals.items():
            rows[method].append((wall, cpu))
        print(f"round {round_}: " + ", ".join(f"{m} {w:.1f}s" for m, (w, _) in totals.items()), file=sys.stderr)
    return rows


def peak_worker(method: str, args) -> dict:
    """Peak RSS of one method over one forget and one retain batch, in a fresh process."""
    args.batches = 2
    model, examples, collate = setup(args)
    base_rss = _rss_mib()
    run = method_runner(method, model, collate, args.batch_size)
    result = [run(examples[: args.batch_size]), run(examples[args.batch_size :])]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del result
    return {"peak_mib": peak, "over_model_mib": peak - base_rss, "params": sum(p.numel() for p in model.parameters()),
            "eligible": sum(p.numel() for p in eligible_parameters(model).values())}


METHODS = {"plain": "plain forward+backward", "accumulate": "accumulate_example_gradients (block weights)",
           "accumulate-all": "accumulate_example_gradients (all params)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4, help="total batches, split into forget/retain halves")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--intermediate", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2, help="timing rounds (median reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--peak-worker", choices=list(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["GRIN_UNLEARN_QUIET"] = "1"
    if args.peak_worker:
        print(json.dumps(peak_worker(args.peak_worker, args)))
        return

    peaks = {}
    for method in METHODS:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--peak-worker", method]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        peaks[method] = json.loads(out.strip().splitlines()[-1])
        print(f"peak RSS {method}: {peaks[method]['peak_mib']:.0f} MiB", file=sys.stderr)
    rows = timing(args)

    n, eligible = peaks["plain"]["params"], peaks["plain"]["eligible"]
    print(f"\nLlama {n / 1e6:.1f}M params ({eligible / 1e6:.1f}M eligible block weights), fp32 CPU, "
          f"{args.batches} batches of {args.batch_size}x{args.seq} tokens ({args.batches // 2} forget + "
          f"{args.batches - args.batches // 2} retain), {args.threads} threads, median of {args.repeats} rounds, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| what | seconds | ratio vs plain | CPU seconds | CPU ratio | peak RSS MiB | over model MiB |")
    print("|---|---|---|---|---|---|---|")
    plain = rows["plain"]
    for method, label in METHODS.items():
        wall = statistics.median(w for w, _ in rows[method])
        cpu = statistics.median(c for _, c in rows[method])
        ratio = statistics.median(w / p for (w, _), (p, _) in zip(rows[method], plain))
        cpu_ratio = statistics.median(c / p for (_, c), (_, p) in zip(rows[method], plain))
        peak = peaks[method]
        print(f"| {label} | {wall:.2f} | {ratio:.3f} | {cpu:.1f} | {cpu_ratio:.3f} | {peak['peak_mib']:.0f} | "
              f"{peak['over_model_mib']:.0f} |")
    print(f"\nfp32 accumulators, forget + retain: {2 * eligible * 4 / MIB:.0f} MiB (block weights), "
          f"{2 * n * 4 / MIB:.0f} MiB (all params); one fp32 .grad set: {n * 4 / MIB:.0f} MiB")


if __name__ == "__main__":
    main()
