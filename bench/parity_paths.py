"""Where could per-item probabilities on the real model differ from the reference's? Our scoring path
against the alternatives, on SmolLM2-135M's target, in one process (fp32, 1 thread).

    .venv/bin/python bench/parity_paths.py [--items 24]

Prints the largest relative difference of the answer probability ``exp(−mean NLL)`` over the first
``--items`` forget10 questions between:
* our teacher-forced pass (:func:`~grin_unlearn.evaluation.engine.score_examples`, sorted by length) at
  batch 24, 5 and 1 (batch composition and padding);
* the reference's path: dataset order, batches of 32 right-padded, full logits, ``cross_entropy`` per
  token (no ``logits_to_keep``, no ``z_y − logsumexp``);
* sdpa against eager attention.
"""

from __future__ import annotations

import argparse
import math

import torch

from grin_unlearn.data.formatting import PadCollator, PromptFormat
from grin_unlearn.data.records import load_qa_split
from grin_unlearn.evaluation.engine import score_examples
from grin_unlearn.experiments.real_benchmark import prepare_real
from grin_unlearn.models import load_model, load_tokenizer, pad_token_id


def probabilities(scores) -> list[float]:
    return [math.exp(sum(s.token_logps) / len(s.token_logps)) for s in scores]


def largest(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b))


def reference_path(model, examples: list[dict], pad: int) -> list[float]:
    collate, out = PadCollator(pad), []
    with torch.no_grad():
        for start in range(0, len(examples), 32):
            batch = collate(examples[start:start + 32])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(-1, -2), labels, ignore_index=-100,
                                                     reduction="none")
            out += torch.exp(-(loss.sum(-1) / (labels != -100).sum(-1))).tolist()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    assets = prepare_real(log=lambda *a, **k: None)
    model, tokenizer = load_model(str(assets.target), dtype="float32"), load_tokenizer(str(assets.target))
    fmt = PromptFormat.load(assets.target)
    records = load_qa_split(assets.world, "forget10")[:args.items]
    examples = fmt.encode_many(tokenizer, [(r["question"], r["answer"]) for r in records])
    pad = pad_token_id(tokenizer)
    ours = {size: probabilities(score_examples(model, examples, pad, size)) for size in (24, 5, 1)}
    reference = reference_path(model, examples, pad)
    model.config._attn_implementation = "eager"
    eager = probabilities(score_examples(model, examples, pad, 24))
    print("| comparison | largest relative difference |\n|---|---:|")
    print(f"| ours, batch 24 vs batch 1 | {largest(ours[24], ours[1]):.1e} |")
    print(f"| ours, batch 5 vs batch 1 | {largest(ours[5], ours[1]):.1e} |")
    print(f"| ours vs the reference's path (same process) | {largest(ours[24], reference):.1e} |")
    print(f"| sdpa vs eager attention | {largest(ours[24], eager):.1e} |")


if __name__ == "__main__":
    main()
