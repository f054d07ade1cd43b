"""How many tokens a TOFU evaluation's teacher forcing runs, without and with the shared starts.

    .venv/bin/python bench/bench_token_trees.py --model runs/bench_ref_smollm2/target_free_pad \
        --data runs/bench_ref_smollm2/tofu [--sets forget01_perturbed retain_perturbed ...]

Tokenisation only (no model pass). The sequences are the ones ``grin-unlearn eval --benchmark tofu``
scores (every set's answer, paraphrased answer and perturbed answers, each pair once), in the
model folder's prompt format. Printed per row: the tokens of the whole sequences (what scoring each
sequence alone runs), after each question's prompt is run once for all its answers, and in the token
trees of :mod:`grin_unlearn.evaluation.shared_prefix` (the start all prompts share once, then each
question's prompt and answers as a trie); and the answers' own tokens, whole and in the trees.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.records import read_records_file
from grin_unlearn.evaluation import shared_prefix
from grin_unlearn.evaluation.tofu import _pairs
from grin_unlearn.models import load_tokenizer

ROLE_OF = {"forget": "forget", "retain": "retain", "real_authors": "real_authors", "world_facts": "world_facts",
           "holdout": "holdout"}


def role_of(name: str) -> str:
    return next(role for prefix, role in ROLE_OF.items() if name.startswith(prefix))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder (its tokenizer and prompt_format.json)")
    parser.add_argument("--data", required=True, type=Path, help="TOFU-layout folder")
    parser.add_argument("--sets", nargs="+", default=["forget01_perturbed", "retain_perturbed", "holdout01",
                                                      "real_authors_perturbed", "world_facts_perturbed"])
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.model)
    fmt = PromptFormat.load(Path(args.model)) or PromptFormat()
    pairs = list(dict.fromkeys(pair for name in args.sets
                               for pair in _pairs(read_records_file(args.data / f"{name}.json"), role_of(name))))
    examples = fmt.encode_many(tokenizer, pairs)
    groups = shared_prefix.prefix_groups(examples)
    start = shared_prefix.shared_start(examples, groups)
    trees = shared_prefix._trees(examples, groups, len(start))
    whole = sum(len(e["input_ids"]) for e in examples)
    prompts_once = sum(s + sum(len(examples[i]["input_ids"]) - s for i in members) for s, members in groups)
    in_trees = len(start) + sum(len(t.tokens) for t in trees)
    answers = sum(len(e["input_ids"]) - len(e.get("prompt_ids") or ()) for e in examples)
    answer_nodes = sum(sum(1 for node in range(len(t.tokens))
                           if t.depths[node] + t.start >= min(len(examples[m].get("prompt_ids") or ()) for m in t.members))
                       for t in trees)
    print(f"{len(examples)} sequences, {len(groups)} prompts, {len(trees)} trees, shared start {len(start)} tokens\n")
    print("| what | tokens | share of whole |")
    print("|---|---:|---:|")
    for label, value in (("whole sequences", whole), ("each prompt once", prompts_once),
                         ("token trees (start once)", in_trees)):
        print(f"| {label} | {value} | {value / whole:.2f} |")
    print(f"\nanswers' own tokens: {answers} whole, {answer_nodes} in the trees ({answer_nodes / answers:.2f})")


if __name__ == "__main__":
    main()
