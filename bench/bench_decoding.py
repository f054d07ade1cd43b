"""Benchmark: greedy decoding (our loop against ``generate``) and ROUGE (ours against ``rouge_score``).

    .venv/bin/python bench/bench_decoding.py --models runs/bench_reference    # after bench/bench_reference.py

On the models and TOFU-layout files that ``bench/bench_reference.py`` builds: the 1,017 distinct
questions of the forget10, retain, real-authors and world-facts sets, 200 new tokens, decoded by
``generate`` (static and dynamic cache, batch 64) and by :func:`grin_unlearn.evaluation.engine.greedy_decode`
at batches 64 to 1024, each row checked token for token against ``generate``'s texts. Then the ROUGE of
the untrained model's generations against the gold answers, by ``rouge_score.RougeScorer`` and by
:func:`grin_unlearn.metrics.rouge_scores`, checked equal. Every row of a table comes from one run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.evaluation.engine import generate_texts
from grin_unlearn.metrics import rouge_scores
from grin_unlearn.models import load_model, load_tokenizer

SETS = ("forget10_perturbed", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")
RUNS = (("generate, static cache", 64, False, True), ("generate, dynamic cache", 64, False, False),
        ("our loop", 64, True, True), ("our loop", 256, True, True), ("our loop", 512, True, True),
        ("our loop", 1024, True, True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="runs/bench_reference", help="bench_reference.py's work folder")
    args = parser.parse_args()
    root = Path(args.models)
    records = [json.loads(line) for name in SETS for line in open(root / "tofu" / f"{name}.json")]
    answers = {r["question"]: r["answer"] for r in records}
    questions = list(answers)
    print(f"{len(questions)} prompts, 200 new tokens, torch threads {torch.get_num_threads()}\n")
    print("| model | decoder | batch | seconds | texts differing from generate's |")
    print("|---|---|---:|---:|---:|")
    texts = {}
    for kind in ("untrained", "finetuned"):
        model, tokenizer = load_model(str(root / f"model_{kind}")), load_tokenizer(str(root / f"model_{kind}"))
        prompts = PromptFormat().prompts_ids(tokenizer, questions)
        first = None
        for label, batch, loop, static in RUNS:
            start = time.perf_counter()
            out = generate_texts(model, tokenizer, prompts, 200, batch, static_cache=static, use_loop=loop)
            seconds = time.perf_counter() - start
            first = first or out
            print(f"| {kind} | {label} | {batch} | {seconds:.1f} | {sum(a != b for a, b in zip(out, first))} |",
                  flush=True)
        texts[kind] = first
    from rouge_score import rouge_scorer

    golds, generations = [answers[q] for q in questions], texts["untrained"]
    start = time.perf_counter()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    theirs = [scorer.score(g, p) for g, p in zip(golds, generations)]
    theirs_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = rouge_scores(generations, golds)
    ours_s = time.perf_counter() - start
    same = all(o["rougeL_recall"] == t["rougeL"].recall and o["rouge1_recall"] == t["rouge1"].recall
               and o["rougeL_f1"] == t["rougeL"].fmeasure for o, t in zip(ours, theirs))
    print(f"\n| ROUGE of {len(golds)} untrained generations | seconds |\n|---|---:|\n"
          f"| rouge_score.RougeScorer | {theirs_s:.2f} |\n| grin_unlearn.metrics.rouge_scores | {ours_s:.2f} |\n"
          f"\nequal floats: {same}")


if __name__ == "__main__":
    main()
