"""Benchmark: the full forget10 TOFU protocol on a generated world of TOFU's size with a ~2M-parameter model.

    PYTHONPATH=src OMP_NUM_THREADS=2 .venv/bin/python bench/bench_eval.py --threads 2 [--schedule both]

World (TOFU's shape, built from two generated worlds since one holds at most 128 authors): 200 authors
x 20 questions (the 12 attribute questions and 8 paraphrased ones); answers of two sentences (about 30
tokens, TOFU's are 1-3 sentences), 5 perturbed answers each. Sets as TOFU's forget10 evaluation:
forget10_perturbed 400, retain_perturbed 400, holdout10 400, real_authors 100 and world_facts 117
(short answers, 3 perturbed); every question distinct, as in TOFU. Model: an untrained Llama (``--layers 6``: 2.1M parameters) with a
2048-token BPE trained on the world. An untrained model never emits EOS, so every generation runs
the full 200 new tokens: the worst case for generation time.

``--schedule ours`` times :func:`grin_unlearn.evaluation.evaluate` (one teacher-forced sweep over every
answer, paraphrase and perturbed answer of every set, sorted by length; one generation per question).
``--schedule per-metric`` replays the reference implementation's schedule with the same model code:
one pass per metric dataset in dataset order (forget/retain/ra/wf answers, paraphrases, perturbed
answers, the MIA forget and holdout sets, the extraction-strength set), batches of 32, generation
batches of 64 (forget, retain) and 32 (ra, wf) in dataset order with generate's default dynamic KV cache. The ratio of the two is measured in
one run. Peak memory is the process's maximum resident set size (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import time

import torch

from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.world import generate_world, world_corpus
from grin_unlearn.evaluation import EvalConfig, evaluate
from grin_unlearn.evaluation.engine import generate_texts, score_examples
from grin_unlearn.models import TinyModelConfig, build_tiny_model, pad_token_id, train_tokenizer

QUESTIONS_PER_AUTHOR = 20


def _author_items(records: list[dict]) -> list[dict]:
    """20 TOFU-like items of one author from its 12 attribute records."""
    items = []
    for j in range(QUESTIONS_PER_AUTHOR):
        base, other = records[j % 12], records[(5 * j + 3) % 12]
        question = base["question"] if j < 12 else base["paraphrased_question"]
        perturbed = [p + " " + q for p in base["perturbed_answer"] for q in other["perturbed_answer"]][:5]
        items.append({"question": question, "answer": base["answer"] + " " + other["answer"],
                      "paraphrased_answer": base["paraphrased_answer"] + " " + other["paraphrased_answer"],
                      "perturbed_answer": perturbed, "author": base["author"]})
    return items


def _short_items(records: list[dict], count: int, rng: random.Random) -> list[dict]:
    """Real-authors / world-facts shaped items: a short answer (the keyword) and 3 wrong ones."""
    values = sorted({r["keywords"][0] for r in records})
    items = []
    for record in records[:count]:
        value = record["keywords"][0]
        items.append({"question": record["question"], "answer": value, "paraphrased_answer": value,
                      "perturbed_answer": rng.sample([v for v in values if v != value], 3)})
    return items


def tofu_sized_world(seed: int = 0) -> dict[str, list[dict]]:
    worlds = [generate_world(110, 10, seed), generate_world(110, 10, seed + 1)]
    by_author: dict[str, list[dict]] = {}
    for world in worlds:
        for record in world["full"]:
            by_author.setdefault(record["author"], []).append(record)
    per_author = list(by_author.values())
    authors = [_author_items(recs) for recs in per_author[:200]]
    spare = [r for recs in per_author[200:] for r in recs]  # 20 authors' records: distinct short questions
    holdout = [_author_items([r for r in w["holdout"] if r["author"] == a])
               for w in worlds for a in dict.fromkeys(r["author"] for r in w["holdout"])]
    rng = random.Random(seed)
    retain_records = [r for recs in authors[:-20] for r in recs]
    return {"forget10_perturbed": [r for recs in authors[-20:] for r in recs],
            "retain_perturbed": retain_records[:400],
            "holdout10": [r for recs in holdout for r in recs][:400],
            "real_authors_perturbed": _short_items(spare[:100], 100, rng),
            "world_facts_perturbed": _short_items(spare[100:217], 117, rng)}


ROLES = {"forget10_perturbed": "forget", "retain_perturbed": "retain", "holdout10": "holdout",
         "real_authors_perturbed": "real_authors", "world_facts_perturbed": "world_facts"}


def per_metric_schedule(model, tokenizer, sets: dict[str, list[dict]], fmt: PromptFormat, max_new_tokens: int) -> None:
    """The reference's work: a teacher-forced pass per metric dataset and a generation pass per set."""
    pad = pad_token_id(tokenizer)

    def tf(pairs: list[tuple[str, str]]) -> None:
        examples = fmt.encode_many(tokenizer, pairs)
        for start in range(0, len(examples), 32):  # dataset order: batches pad to their longest
            score_examples(model, examples[start:start + 32], pad, 32)

    for name, role in ROLES.items():
        records = sets[name]
        tf([(r["question"], r["answer"]) for r in records])  # *_Q_A_Prob (forget also: MIA, ES below)
        if role == "holdout":
            continue
        if role in ("forget", "retain"):
            tf([(r["question"], r["paraphrased_answer"]) for r in records])  # *_Q_A_PARA_Prob
        tf([(r["question"], p) for r in records for p in r["perturbed_answer"]])  # *_Q_A_PERT_Prob
        prompts = fmt.prompts_ids(tokenizer, [r["question"] for r in records])
        batch = 64 if role in ("forget", "retain") else 32
        for start in range(0, len(prompts), batch):
            generate_texts(model, tokenizer, prompts[start:start + batch], max_new_tokens, batch, static_cache=False)
    for name in ("forget10_perturbed", "holdout10") * 3:  # mia_min_k, mia_loss, mia_zlib: forget + holdout
        tf([(r["question"], r["answer"]) for r in sets[name]])
    tf([(r["question"], r["answer"]) for r in sets["forget10_perturbed"]])  # extraction_strength


def finetune_briefly(model, tokenizer, sets: dict[str, list[dict]], fmt: PromptFormat, steps: int) -> None:
    """AdamW on the answers of every set but the holdout, so generations end in EOS as a trained model's do."""
    from grin_unlearn.data.formatting import PadCollator, encode_records

    examples = [e for name, records in sets.items() if name != "holdout10" for e in encode_records(tokenizer, records, fmt)]
    collate, rng = PadCollator(tokenizer.pad_token_id), random.Random(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = collate(rng.sample(examples, 32))
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--layers", type=int, default=6, help="Llama layers (6: 2.1M parameters)")
    parser.add_argument("--batch-size", type=int, default=64, help="EvalConfig.batch_size of our schedule (default 64)")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--schedule", choices=["ours", "per-metric", "both"], default="ours")
    parser.add_argument("--finetune-steps", type=int, default=0,
                        help="train the model this many AdamW steps first (batch 32), so it ends answers in EOS "
                             "(default 0: untrained, every generation runs max_new_tokens)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sets = tofu_sized_world()
    tokenizer = train_tokenizer(world_corpus(sets), 2048)
    model = build_tiny_model(TinyModelConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=args.layers,
                                             num_attention_heads=4, max_position_embeddings=512), tokenizer, seed=0)
    fmt, params = PromptFormat(), sum(p.numel() for p in model.parameters())
    config = EvalConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    if args.finetune_steps:
        finetune_briefly(model, tokenizer, sets, fmt, args.finetune_steps)
    state = f"fine-tuned {args.finetune_steps} steps" if args.finetune_steps else "untrained"
    print(f"{state} Llama, {params / 1e6:.2f}M parameters, torch threads = {torch.get_num_threads()}, "
          f"max_new_tokens = {config.max_new_tokens}, sets: "
          + ", ".join(f"{name} {len(records)}" for name, records in sets.items()) + "\n")
    rows = []
    if args.schedule in ("ours", "both"):
        start, cpu = time.perf_counter(), time.process_time()
        result = evaluate(model, tokenizer, sets, ROLES, fmt, config)
        rows.append(("ours (evaluation.evaluate)", time.perf_counter() - start, time.process_time() - cpu))
        assert all(entry["n"] == len(sets[name]) for name, entry in result["sets"].items())
        lengths = [len(g.split()) for e in result["sets"].values() for g in e["per_item"].get("generation", [])]
        print(f"generations: {len(lengths)}, mean {sum(lengths) / len(lengths):.0f} words")
    if args.schedule in ("per-metric", "both"):
        start, cpu = time.perf_counter(), time.process_time()
        per_metric_schedule(model, tokenizer, sets, fmt, args.max_new_tokens)
        rows.append(("reference schedule (per metric)", time.perf_counter() - start, time.process_time() - cpu))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("| schedule | wall s | CPU s | wall ratio to the per-metric schedule |")
    print("|---|---:|---:|---:|")
    reference = {name: wall for name, wall, _ in rows}.get("reference schedule (per metric)")
    for name, wall, cpu in rows:
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | " + (f"{wall / reference:.2f} |" if reference else "- |"))
    print(f"\npeak resident memory of the process: {peak_gb:.2f} GB; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
