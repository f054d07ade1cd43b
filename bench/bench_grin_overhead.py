"""Benchmark: what a GRIN run costs on top of the unmasked run of the same objective.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_grin_overhead.py [--rounds 3]

GRIN's only necessary extra work is its scoring pass: one forward+backward over the forget and retain
examples it scores (``G_f``, ``G_r``). Each round runs, on fresh copies of the same model and data, in
one process: the unmasked NPO run (scorer ``none``), the GRIN + NPO run (p = 0.5, σ² = 1e-4), the GRIN
run with the noise probe on (``noise.noise_probe``: two more forget-gradient passes), and a plain
forward+backward over the scored examples (the floor of a scoring pass). Target: GRIN − unmasked ≤ 1.1 ×
the scoring pass. Times are medians over the rounds of ``unlearn()``'s wall time (the whole run:
tokenising, scoring, selection, noise, reference log-probs, training, saving).

Data: the TOFU-sized world of ``bench/bench_eval.py``: the first 80 forget10 records (20 steps at batch
4) and the 400 retain records. Models: random Llamas (4 layers, hidden 128; 8 layers, hidden 256) with a BPE of at most 4,096
tokens trained on the world; the table prints their parameter counts.

``--real``: the real benchmark's SmolLM2-135M target instead (fp32, its chat format), on the real world's
forget01 (20 records: 5 steps at batch 4) and the first 80 retain90 records.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench_eval import tofu_sized_world

from grin_unlearn.config import NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig
from grin_unlearn.data.formatting import PadCollator, PromptFormat, encode_training_records
from grin_unlearn.data.world import world_corpus
from grin_unlearn.models import TinyModelConfig, build_tiny_model, train_tokenizer
from grin_unlearn.pipeline import unlearn
from grin_unlearn.scoring.gradients import batch_loss

SIZES = {"4 layers, hidden 128": TinyModelConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                                 max_position_embeddings=512, vocab_size=4096),
         "8 layers, hidden 256": TinyModelConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=4,
                                max_position_embeddings=512, vocab_size=4096)}


def config(scorer: str, probe: bool = False) -> UnlearnConfig:
    masked = scorer != "none"
    return UnlearnConfig(objective="npo", selection=SelectionConfig(scorer=scorer, ratio=0.5, score_batch_size=16),
                         noise=NoiseConfig(noise_var=1e-4 if masked else 0.0, noise_probe=probe),
                         train=TrainConfig(epochs=1, lr=1e-4, batch_size=4, max_length=128, seed=0))


def plain_pass(model, tokenizer, records: list[dict], batch_size: int = 16, fmt: PromptFormat | None = None) -> float:
    """Seconds of one forward+backward over ``records`` in scoring's batches (every parameter trainable)."""
    examples = encode_training_records(tokenizer, records, fmt or PromptFormat(max_length=128))
    collate = PadCollator(tokenizer.pad_token_id)
    model = copy.deepcopy(model).train()
    start = time.perf_counter()
    for i in range(0, len(examples), batch_size):
        batch_loss(model, collate(examples[i:i + batch_size])).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--real", action="store_true", help="the real SmolLM2-135M target instead (module doc)")
    args = parser.parse_args()
    fmt = None
    if args.real:
        from grin_unlearn.data.records import load_qa_split
        from grin_unlearn.experiments.real_benchmark import RealBenchmarkConfig, prepare_real
        from grin_unlearn.models import load_model, load_tokenizer

        assets = prepare_real(RealBenchmarkConfig())
        forget, retain = load_qa_split(assets.world, "forget01"), load_qa_split(assets.world, "retain90")[:80]
        tokenizer, fmt = load_tokenizer(assets.target), PromptFormat.load(assets.target)
        models = {"SmolLM2-135M target": load_model(assets.target)}
    else:
        sets = tofu_sized_world()
        forget, retain = sets["forget10_perturbed"][:80], sets["retain_perturbed"]
        tokenizer = train_tokenizer(world_corpus(sets), 4096)
        models = {size: build_tiny_model(c, tokenizer, seed=0) for size, c in SIZES.items()}
    print(f"torch threads {torch.get_num_threads()}; forget {len(forget)}, retain {len(retain)} records; "
          f"{args.rounds} rounds\n")
    print("| model | unmasked s | GRIN s | GRIN + probe s | scoring s (in the GRIN run) | plain fwd+bwd s "
          "| (GRIN − unmasked) / scoring | (GRIN − unmasked) / plain | probe s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size, model in models.items():
        runs: dict[str, list[float]] = {"none": [], "grin": [], "probe": [], "scoring": [], "plain": [], "probe_s": []}
        with tempfile.TemporaryDirectory() as work:
            for round_ in range(args.rounds):
                for label, cfg in (("none", config("none")), ("grin", config("grin")), ("probe", config("grin", True))):
                    start = time.perf_counter()
                    result = unlearn(copy.deepcopy(model), tokenizer, forget, retain, cfg,
                                     Path(work) / f"{label}{round_}", log=lambda *_: None, **({"fmt": fmt} if fmt else {}))
                    runs[label].append(time.perf_counter() - start)
                    if label == "grin":
                        runs["scoring"].append(result.timing["score_forget"] + result.timing["score_retain"])
                    if label == "probe":
                        runs["probe_s"].append(result.timing["noise_probe"])
                runs["plain"].append(plain_pass(model, tokenizer, forget, fmt=fmt) + plain_pass(model, tokenizer, retain, fmt=fmt))
        m = {k: statistics.median(v) for k, v in runs.items()}
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {size} ({params:.1f}M) | {m['none']:.2f} | {m['grin']:.2f} | {m['probe']:.2f} | {m['scoring']:.2f} | "
              f"{m['plain']:.2f} | **{(m['grin'] - m['none']) / m['scoring']:.2f}** | "
              f"{(m['grin'] - m['none']) / m['plain']:.2f} | {m['probe_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
