"""Benchmark: global top-p selection with bounded memory vs concatenate-and-select.

    PYTHONPATH=src .venv/bin/python bench/bench_selection.py [--layers 8] [--ratios 0.2 0.4] [--threads 1 2] [--sort]

Scores are fp32 uniform random numbers shaped like the block weights of a ~100M-parameter Llama
(hidden 1024, intermediate 2816, 8 layers, 7 projections per layer: 102.8M scores). Methods:

* ``radix``    : :func:`grin_unlearn.selection.top_fraction.select_top_fraction` (histogram radix select,
  CPU work in numpy, so ``--threads`` barely matters to it).
* ``kthvalue`` : concatenate all scores, ``torch.kthvalue`` for the threshold, then the same tie-break.
* ``sort``     : :func:`grin_unlearn.selection.top_fraction.brute_force_top_fraction` (concat + stable sort); only
  with ``--sort``, it is slow.

Each (method, p) runs in a fresh subprocess that builds the scores, resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``; falls back to ``ru_maxrss``), runs the method once, and reports the wall
time and the peak RSS above the RSS measured just before the call ("extra peak"), which includes the
returned masks (N bytes). The masks of every method are compared through a SHA-256 of their bits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from grin_unlearn.selection.top_fraction import select_top_fraction

from grin_unlearn.selection.reference import brute_force_top_fraction

MIB = 1024 * 1024


def llama_block_shapes(layers: int, hidden: int = 1024, intermediate: int = 2816) -> dict[str, tuple[int, int]]:
    shapes = {}
    for i in range(layers):
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"model.layers.{i}.self_attn.{proj}.weight"] = (hidden, hidden)
        shapes[f"model.layers.{i}.mlp.gate_proj.weight"] = (intermediate, hidden)
        shapes[f"model.layers.{i}.mlp.up_proj.weight"] = (intermediate, hidden)
        shapes[f"model.layers.{i}.mlp.down_proj.weight"] = (hidden, intermediate)
    return shapes


def kthvalue_top_fraction(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Naive baseline: concat, k-th largest via kthvalue, ``> t`` plus the first ties (same tie-break)."""
    flat = torch.cat([s.reshape(-1) for s in scores.values()])  # (N,) fp32
    n = flat.numel()
    k = round(ratio * n)
    threshold = torch.kthvalue(flat, n - k + 1).values  # k-th largest
    chosen = flat > threshold  # (N,) bool
    need = k - int(chosen.sum())
    ties = (flat == threshold).nonzero().reshape(-1)[:need]  # tie positions in concatenation order
    chosen[ties] = True
    del flat
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = chosen[start : start + s.numel()].view(s.shape)
        start += s.numel()
    return masks


METHODS = {"radix": select_top_fraction, "kthvalue": kthvalue_top_fraction, "sort": brute_force_top_fraction}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(method: str, ratio: float, layers: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    scores = {name: torch.rand(shape, generator=gen) for name, shape in llama_block_shapes(layers).items()}
    n = sum(s.numel() for s in scores.values())
    largest = max(s.numel() * 4 for s in scores.values())
    try:  # reset the peak-RSS mark (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        peak_source = "VmHWM"
    except OSError:
        peak_source = "ru_maxrss"
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    masks = METHODS[method](scores, ratio)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM") if peak_source == "VmHWM" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    digest = hashlib.sha256()
    for name, mask in masks.items():
        digest.update(name.encode())
        digest.update(np.packbits(mask.reshape(-1).numpy()).tobytes())
    return {
        "method": method,
        "p": ratio,
        "seconds": seconds,
        "extra_peak_mib": (peak - before) / 1024,
        "n": n,
        "selected": sum(int(m.sum()) for m in masks.values()),
        "largest_tensor_bytes": largest,
        "digest": digest.hexdigest(),
        "peak_source": peak_source,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.2, 0.4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads")
    parser.add_argument("--sort", action="store_true", help="also run the stable-sort reference (slow)")
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "P"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], float(args.worker[1]), args.layers, args.threads[0])))
        return

    methods = ["radix", "kthvalue"] + (["sort"] if args.sort else [])
    rows = []
    for threads in args.threads:
        for ratio in args.ratios:
            for method in methods:
                cmd = [sys.executable, __file__, "--worker", method, str(ratio), "--layers", str(args.layers),
                       "--threads", str(threads)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]) | {"threads": threads})
                print(f"done {method} p={ratio} threads={threads}: {rows[-1]['seconds']:.2f}s", file=sys.stderr)

    n, largest = rows[0]["n"], rows[0]["largest_tensor_bytes"]
    print(f"\n{n / 1e6:.1f}M fp32 scores ({args.layers} Llama blocks, hidden 1024, intermediate 2816), "
          f"{os.cpu_count()} CPUs, peak RSS from {rows[0]['peak_source']}\n")
    print("| method | threads | p | seconds | extra peak MiB | N bytes (masks) MiB | 2x largest tensor MiB "
          "| selected | same masks |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        reference = next(r for r in rows if r["p"] == row["p"] and r["method"] == "radix")
        same = "yes" if row["digest"] == reference["digest"] else "NO"
        print(f"| {row['method']} | {row['threads']} | {row['p']} | {row['seconds']:.2f} | "
              f"{row['extra_peak_mib']:.0f} | {n / MIB:.0f} | {2 * largest / MIB:.0f} | {row['selected']} | {same} |")
    if any(r["digest"] != next(x for x in rows if x["p"] == r["p"])["digest"] for r in rows):
        sys.exit("masks differ between methods")


if __name__ == "__main__":
    main()
