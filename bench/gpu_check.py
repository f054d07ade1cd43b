"""One-command GPU check (`make gpu-check`): GRIN's speed and memory on a random 1B Llama in bf16.

    python bench/gpu_check.py                      # CUDA; exits 2 with a message when there is none
    python bench/gpu_check.py --dry-run            # the same code on a tiny model on the CPU (the test)

No download: the model is a ``LlamaForCausalLM`` of the ``1b`` shape of ``bench/memory_model.py``
(hidden 2048, 16 layers, intermediate 8192, 16 heads, vocab 32000: 1.10B parameters) with random
weights, fed random tokens. It measures, in one run, and prints one table (also ``gpu_check.json``):

1. **scoring**: ``G_f`` and ``G_r`` passes of :func:`grin_unlearn.scoring.accumulate_example_gradients`
   over synthetic batches, against the floor: the same forward + backward of the same batches with
   the same parameters requiring gradients, gradients dropped (what any gradient pass costs);
2. **optimizer step**: the masked AdamW (:mod:`grin_unlearn.training.masked_optim`) at p = 0.1 / 0.2 /
   0.4 against ``torch.optim.AdamW(fused=True)`` on the same trainable tensors, with the bytes the
   masked optimizer holds against :meth:`memory_model.OptimizerLayout.state_bytes`;
3. **peak memory** of scoring (passes, scorer, selection) and of two masked training steps, the
   steps of ``bench/memory_steps.py`` that ``bench/bench_memory.py`` measures on the CPU:
   ``torch.cuda.max_memory_allocated`` (on the CPU: :class:`allocator_trace.AllocatorPeak`) over what
   was allocated before, against :func:`memory_model.predict`;
4. with several GPUs, the same scoring, selection and masked steps under FSDP2 over all of them
   (``bench/gpu_check_fsdp2.py``, via ``torchrun``, NCCL), against the model with ``mode="fsdp2"``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("GRIN_UNLEARN_QUIET", "1")  # no progress bars between the table's lines
sys.path.insert(0, str(Path(__file__).resolve().parent))
import memory_model as mm  # noqa: E402
from memory_steps import (DTYPE, RATIOS, PeakMemory, build_model, expected_state_bytes, held_bytes,  # noqa: E402
                          make_optimizer, mask_counts, release, score_and_select, sync, token_examples, train_steps)

NO_CUDA_EXIT = 2


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def floor_pass(model, params: dict, batches: list[dict]) -> None:
    """Forward + backward of every batch with only ``params`` requiring gradients; gradients dropped."""
    from grin_unlearn.scoring.gradients import batch_loss

    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    for batch in batches:
        batch_loss(model, batch).backward()
        for p in params.values():
            p.grad = None
    for p, flag in flags:
        p.requires_grad_(flag)


def check_optimizer(model, params: dict, masks_by_ratio: dict, device, steps: int) -> list[dict]:
    """Per p: masked AdamW step vs fused torch AdamW on the same trainable tensors, and state bytes."""
    out = []
    for ratio, masks in masks_by_ratio.items():
        optimizer = make_optimizer(model, masks)
        trainable = [p for p in model.parameters() if p.requires_grad]
        for p in trainable:
            p.grad = torch.randn_like(p) * 1e-3
        optimizer.step()  # warm-up: allocates the state
        masked = timed(lambda: [optimizer.step() for _ in range(steps)], device) / steps
        held, formula = held_bytes(optimizer), expected_state_bytes(optimizer, masks)
        release(model, optimizer)
        for p in trainable:
            p.grad = torch.randn_like(p) * 1e-3
        fused = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01, fused=True)
        fused.step()
        plain = timed(lambda: [fused.step() for _ in range(steps)], device) / steps
        out.append({"ratio": ratio, **mask_counts(masks), "eligible": sum(m.numel() for m in masks.values()),
                    "masked_step_ms": 1e3 * masked,
                    "fused_adamw_step_ms": 1e3 * plain, "slowdown": masked / plain,
                    "state_bytes": held, "state_bytes_formula": formula, "fused_adamw_state_bytes": held_bytes(fused),
                    "layout": mm.layout_of(optimizer).name})
        for p in trainable:
            p.grad = None
    return out


def single_device(args, device: torch.device, dtype: torch.dtype) -> dict:
    from grin_unlearn.data.formatting import PadCollator
    from grin_unlearn.scoring import ScoringContext, eligible_parameters, get_scorer
    from grin_unlearn.selection.top_fraction import select_top_fraction

    shape = mm.SHAPES[args.shape]
    model = build_model(shape, args.seq, dtype, device=device.type)
    params = eligible_parameters(model)
    collator = PadCollator(0)
    forget = token_examples(shape.vocab, args.batch * args.batches, args.seq, 1)
    retain = token_examples(shape.vocab, args.batch * args.batches, args.seq, 2)
    examples = forget + retain
    batches = [{k: v.to(device) for k, v in collator(examples[i:i + args.batch]).items()}
               for i in range(0, len(examples), args.batch)]  # the batches the two passes run
    floor_pass(model, params, batches[:1])  # warm-up (kernels, allocator)
    floor = timed(lambda: floor_pass(model, params, batches), device)
    with PeakMemory(device) as score_peak:
        masks, passes, select = score_and_select(model, params, forget, retain, collator, args.batch, RATIOS[-1],
                                                 device)
    del masks
    with torch.no_grad():
        random_scores = get_scorer("random")(ScoringContext(params, device=device))
        masks_by_ratio = {r: select_top_fraction(random_scores, r) for r in RATIOS}
    del random_scores
    optim = check_optimizer(model, params, masks_by_ratio, device, args.steps)
    rows = {k: v.to(device) for k, v in collator(forget[:args.batch] + retain[:args.batch]).items()}
    with PeakMemory(device) as train_peak:
        release(model, train_steps(model, masks_by_ratio[RATIOS[-1]], rows))
    w = torch.tensor([], dtype=dtype).element_size()
    setup = mm.Setup(w=w, score_tokens=args.batch * args.seq, train_tokens=2 * args.batch * args.seq,
                     ratio=RATIOS[-1], mode="single", layout=mm.LAYOUTS[optim[-1]["layout"]])
    pred = mm.predict(shape, setup)
    memory = {step: {"measured": peak.peak, "predicted": mm.peak_over_start(pred, step),
                     "ratio": peak.peak / mm.peak_over_start(pred, step)}
              for step, peak in (("scoring", score_peak), ("training", train_peak))}
    return {"params": sum(p.numel() for p in model.parameters()), "eligible": sum(p.numel() for p in params.values()),
            "scoring": {"passes_seconds": passes, "floor_seconds": floor, "ratio": passes / floor,
                        "score_select_seconds": select,
                        "batches": len(batches), "tokens_per_batch": args.batch * args.seq},
            "optimizer": optim, "memory": memory}


# --- report ----------------------------------------------------------------------------------------


def rows(result: dict) -> list[tuple[str, str, str, str]]:
    """``(what, measured, reference, ratio)`` rows of the table."""
    gib = 1024**3
    s = result["scoring"]
    out = [(f"scoring passes, {s['batches']} batches x {s['tokens_per_batch']} tokens (s)", f"{s['passes_seconds']:.2f}",
            f"{s['floor_seconds']:.2f} forward+backward floor", f"{s['ratio']:.2f}"),
           ("grin scorer + top-p selection (s)", f"{s['score_select_seconds']:.2f}", "", "")]
    for o in result["optimizer"]:
        out.append((f"masked AdamW step, p={o['ratio']} (ms)", f"{o['masked_step_ms']:.1f}",
                    f"{o['fused_adamw_step_ms']:.1f} torch AdamW fused", f"{o['slowdown']:.2f}"))
        out.append((f"masked AdamW state, p={o['ratio']} (MiB)", f"{o['state_bytes'] / 2**20:.1f}",
                    f"{o['state_bytes_formula'] / 2**20:.1f} formula ({o['layout']}); fused AdamW "
                    f"{o['fused_adamw_state_bytes'] / 2**20:.1f}", f"{o['state_bytes'] / o['state_bytes_formula']:.2f}"))
    for step, m in result["memory"].items():
        out.append((f"peak memory, {step} (GiB over start)", f"{m['measured'] / gib:.3f}",
                    f"{m['predicted'] / gib:.3f} memory model", f"{m['ratio']:.2f}"))
    fsdp = result["fsdp2"]
    if "ranks" in fsdp:
        for step in ("scoring", "training"):
            worst = max(r[f"{step}_peak"] for r in fsdp["ranks"])
            pred = fsdp["ranks"][0][f"{step}_predicted"]
            out.append((f"FSDP2 x{fsdp['world']}, peak {step} (GiB, worst rank)", f"{worst / gib:.3f}",
                        f"{pred / gib:.3f} memory model", f"{worst / pred:.2f}"))
        out.append((f"FSDP2 x{fsdp['world']}, scoring passes (s)", f"{fsdp['ranks'][0]['passes_seconds']:.2f}", "", ""))
    else:
        out.append(("FSDP2", "failed" if "failed" in fsdp else "skipped", fsdp.get("failed") or fsdp["skipped"], ""))
    return out


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="the tiny model and small batches (seconds on a CPU)")
    parser.add_argument("--dry-run", action="store_true", help="same as --device cpu --tiny")
    parser.add_argument("--out", default="gpu_check.json", help="where to write the JSON")
    parser.add_argument("--batch", type=int, help="rows per batch (default 8; tiny 2)")
    parser.add_argument("--seq", type=int, help="tokens per row (default 512; tiny 32)")
    parser.add_argument("--batches", type=int, help="batches per gradient pass (default 4; tiny 2)")
    parser.add_argument("--steps", type=int, help="timed optimizer steps (default 10; tiny 2)")
    parser.add_argument("--fsdp-procs", type=int, help="FSDP2 processes (default: every GPU when there are 2+)")
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.tiny = "cpu", True
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False). It needs an NVIDIA GPU and a "
              "CUDA build of torch; `python bench/gpu_check.py --dry-run` runs the same code on a tiny CPU model.",
              file=sys.stderr)
        sys.exit(NO_CUDA_EXIT)
    tiny = args.tiny or args.shape == "tiny"
    args.shape = args.shape or ("tiny" if tiny else "1b")
    for name, big, small in (("batch", 8, 2), ("seq", 512, 32), ("batches", 4, 2), ("steps", 10, 2)):
        if getattr(args, name) is None:
            setattr(args, name, small if tiny else big)
    torch.manual_seed(0)
    device = torch.device(args.device)
    start = time.perf_counter()
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "gpus": torch.cuda.device_count() if device.type == "cuda" else 0, "torch": torch.__version__,
              "shape": {"name": args.shape, **vars(mm.SHAPES[args.shape])}, "dtype": "bf16",
              **single_device(args, device, DTYPE)}
    procs = args.fsdp_procs if args.fsdp_procs is not None else (result["gpus"] if result["gpus"] > 1 else 0)
    if procs > 1:
        from gpu_check_fsdp2 import run_fsdp2

        result["fsdp2"] = run_fsdp2(args, procs)
    else:
        result["fsdp2"] = {"skipped": "fewer than 2 GPUs"}
    result["seconds"] = time.perf_counter() - start
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"GRIN GPU check on {result['device']} (torch {result['torch']}), {args.shape} Llama "
          f"({_count(result['params'])} parameters, {_count(result['eligible'])} eligible), bf16; "
          f"{result['seconds']:.0f} s. Written: {args.out}\n")
    print("| check | measured | reference | ratio |\n|---|---|---|---|")
    for row in rows(result):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
