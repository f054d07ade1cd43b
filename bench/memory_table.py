"""The memory model's table: predicted peak per GPU of GRIN's scoring and masked training (GiB).

    PYTHONPATH=src .venv/bin/python bench/memory_table.py [--ratio 0.4] [--world 2 4 8]

The formulas are :mod:`memory_model`'s (its docstring has each one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_model import GIB, SHAPES, Setup, predict  # noqa: E402


def table(names=("7b", "13b", "70b"), worlds=(2, 4, 8), ratio: float = 0.4) -> str:
    """Markdown table of the predicted per-GPU peaks (GiB), bf16, default batch sizes."""
    rows = ["| model | P | E | mode | weights held | G_f+G_r | scores+masks | masked AdamW state | activations "
            "(score / train) | **scoring** | scoring, accumulators on CPU | **masked training** "
            "| masked training, checkpointing | full fine-tuning, AdamW |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        shape = SHAPES[name]
        modes = [("ddp", 2)] + [("fsdp2", n) for n in worlds]
        for mode, world in modes:
            pred = predict(shape, Setup(ratio=ratio, mode=mode, world=world))
            ckpt = predict(shape, Setup(ratio=ratio, mode=mode, world=world, checkpointing=True))
            label = "DDP, any N ≥ 2" if mode == "ddp" else f"FSDP2, N={world}"
            offload = f"{pred['scoring_offload'] / GIB:.1f}" if mode == "ddp" else "—"
            rows.append(
                f"| {name.upper()} | {shape.params / 1e9:.2f}B | {shape.eligible / 1e9:.2f}B | {label} "
                f"| {pred['local_weights'] / GIB:.1f} | {pred['accumulators'] / GIB:.1f} "
                f"| {(pred['scores'] + pred['masks']) / GIB:.1f} | {pred['optimizer'] / GIB:.1f} "
                f"| {pred['act_scoring'] / GIB:.1f} / {pred['act_training'] / GIB:.1f} "
                f"| **{pred['scoring'] / GIB:.1f}** | {offload} | **{pred['training'] / GIB:.1f}** "
                f"| {ckpt['training'] / GIB:.1f} | {pred['adamw_training'] / GIB:.1f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratio", type=float, default=0.4, help="selected fraction p")
    parser.add_argument("--world", type=int, nargs="*", default=[2, 4, 8], help="FSDP2 world sizes")
    args = parser.parse_args()
    print(f"Predicted peak per GPU, GiB: bf16 weights, p={args.ratio}, scoring batch 8x128 tokens, training "
          "batch (16 forget + 16 retain) x 128, one micro-batch per step, no gradient checkpointing, NCCL. DDP "
          "keeps everything whole on every GPU (one process: the same less DDP's gradient buckets).\n")
    print(table(worlds=tuple(args.world), ratio=args.ratio))


if __name__ == "__main__":
    main()
