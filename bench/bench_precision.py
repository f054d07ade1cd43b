"""Benchmark: how far bf16 autocast moves GRIN's mask and the evaluation on the real model, and how fast.

    .venv/bin/python bench/bench_precision.py            # the real-model benchmark's target (built if absent)

On the SmolLM2-135M target of the real-model benchmark (:mod:`grin_unlearn.experiments.real_benchmark`),
in one run on the same machine, fp32 then bf16 (``--precision``, :mod:`grin_unlearn.precision`):

1. GRIN's scoring pass (``G_f`` over forget10, ``G_r`` over retain90; accumulators fp32 either way),
   its seconds, and the overlap of the two top-p masks at p = 0.1 and 0.4: ``|M_fp32 ∩ M_bf16| / |M_fp32|``;
2. the evaluation of ``make demo-real`` (TOFU protocol, retain capped at 100), its seconds and the
   largest difference of its aggregates, plus the share of identical greedy generations.

Prints a markdown table (docs/performance.md, "Mixed precision").
"""

from __future__ import annotations

import time

import torch

from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.records import load_qa_split
from grin_unlearn.evaluation import default_roles, evaluate, load_eval_sets
from grin_unlearn.experiments.real_benchmark import prepare_real
from grin_unlearn.experiments.real_demo import REAL_EVAL
from grin_unlearn.models import load_model, load_tokenizer
from grin_unlearn.precision import autocast
from grin_unlearn.scoring.influence import score_influence
from grin_unlearn.selection.top_fraction import select_top_fraction

RATIOS = (0.1, 0.4)
SHOWN = ("forget_quality", "model_utility", "forget_rouge_l", "forget_keyword_accuracy", "retain_rouge_l",
         "retain_keyword_accuracy", "knowledge_accuracy", "forget_truth_ratio", "mia_auc_min_k")


def overlap(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    both = sum(int((a[n] & b[n]).sum()) for n in a)
    return both / max(1, sum(int(m.sum()) for m in a.values()))


def main() -> None:
    assets = prepare_real()
    config = assets.config
    model = load_model(str(assets.target), dtype="float32", device="cpu")
    tokenizer = load_tokenizer(str(assets.target))
    fmt = PromptFormat.load(assets.target)
    forget = load_qa_split(assets.world, config.forget_split)
    retain = load_qa_split(assets.world, config.retain_split)
    roles = default_roles(assets.world, config.forget_split, config.retain_split)
    sets = load_eval_sets(assets.world, roles)
    masks, scoring_s, evals, eval_s = {}, {}, {}, {}
    for precision in ("fp32", "bf16"):
        start = time.perf_counter()
        with autocast(precision):
            influence = score_influence(model, tokenizer, forget, retain, "grin", fmt)
        scoring_s[precision] = time.perf_counter() - start
        masks[precision] = {p: select_top_fraction(influence.scores, p) for p in RATIOS}
        del influence
        start = time.perf_counter()
        with autocast(precision):
            evals[precision] = evaluate(model, tokenizer, sets, roles, fmt, REAL_EVAL)
        eval_s[precision] = time.perf_counter() - start
    print("| precision | GRIN scoring (s) | evaluation (s) | " + " | ".join(f"mask overlap p={p}" for p in RATIOS) + " |")
    print("|---|---|---|" + "---|" * len(RATIOS))
    for precision in ("fp32", "bf16"):
        cells = [f"{overlap(masks['fp32'][p], masks[precision][p]):.4f}" for p in RATIOS]
        print(f"| {precision} | {scoring_s[precision]:.1f} | {eval_s[precision]:.1f} | " + " | ".join(cells) + " |")
    print(f"\nbf16 / fp32: scoring {scoring_s['bf16'] / scoring_s['fp32']:.2f}x, "
          f"evaluation {eval_s['bf16'] / eval_s['fp32']:.2f}x\n")
    print("| aggregate | fp32 | bf16 | difference |\n|---|---|---|---|")
    for key in SHOWN:
        a, b = evals["fp32"]["aggregates"].get(key), evals["bf16"]["aggregates"].get(key)
        if a is not None and b is not None:
            print(f"| {key} | {a:.4g} | {b:.4g} | {b - a:+.4g} |")
    same = total = 0
    for name, entry in evals["fp32"]["sets"].items():
        ours, theirs = entry["per_item"].get("generation"), evals["bf16"]["sets"][name]["per_item"].get("generation")
        if ours and theirs:
            same += sum(x == y for x, y in zip(ours, theirs))
            total += len(ours)
    print(f"\nidentical greedy generations: {same} / {total} ({same / max(1, total):.1%})")


if __name__ == "__main__":
    main()
