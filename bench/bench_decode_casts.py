"""One bf16 decoding step of the real model with and without autocast's weight-cast cache.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_decode_casts.py [--model FOLDER] [--batch 16] [--steps 10]

Under ``--precision bf16`` our autocast keeps no cast cache (training must see each step's weights),
so before ``engine.eval_mode`` kept one, every evaluation forward cast all weights again. This times
greedy one-token steps over a KV cache of a ``--batch`` × 48-token prompt: inside ``inference_mode``
under our autocast (no cache, the old evaluation), and inside :func:`~grin_unlearn.evaluation.engine.eval_mode`
under the same autocast (the cache kept for the block), alternating three rounds each, and checks
that both pick the same tokens.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch

from grin_unlearn.evaluation.engine import eval_mode
from grin_unlearn.experiments.real_benchmark import prepare_real
from grin_unlearn.models import load_model
from grin_unlearn.precision import autocast


def decode(model, prompt: torch.Tensor, steps: int, block) -> tuple[float, list[list[int]]]:
    """Seconds per step and the tokens of ``steps`` greedy steps after ``prompt``, inside ``block()``."""
    with autocast("bf16"), block():
        out = model(input_ids=prompt, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1:].float().argmax(-1)
        tokens = [token]
        start = time.perf_counter()
        for _ in range(steps):
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].float().argmax(-1)
            tokens.append(token)
        seconds = (time.perf_counter() - start) / steps
    return seconds, torch.cat(tokens, dim=1).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: the real benchmark's target, built if absent)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    model = load_model(str(args.model or prepare_real().target)).eval()
    prompt = torch.randint(0, model.config.vocab_size, (args.batch, 48), generator=torch.Generator().manual_seed(0))
    sides = {"no cache (inference_mode)": torch.inference_mode, "cast cache (eval_mode)": lambda: eval_mode(model)}
    times: dict[str, list[float]] = {name: [] for name in sides}
    tokens = {}
    for _ in range(3):
        for name, block in sides.items():
            seconds, tokens[name] = decode(model, prompt, args.steps, block)
            times[name].append(seconds)
    print(f"batch {args.batch}, {args.steps} steps, 3 rounds; same tokens: {len(set(map(str, tokens.values()))) == 1}\n")
    print("| evaluation block | s per step (median, range) | / no cache |")
    print("|---|---:|---:|")
    base = statistics.median(times["no cache (inference_mode)"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.4f} ({min(values):.4f}–{max(values):.4f}) | {median / base:.2f} |")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
