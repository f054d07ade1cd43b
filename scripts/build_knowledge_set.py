"""Rebuild the real-model benchmark's knowledge set: the candidates the pretrained base answers correctly.

    python scripts/build_knowledge_set.py            # writes src/grin_unlearn/data/real_knowledge.json
    python scripts/build_knowledge_set.py --verify   # the base's accuracy on the packaged set, TOFU protocol

Every candidate of ``src/grin_unlearn/data/knowledge_candidates.json`` is asked of the base
(``smollm2-135m``, converted from its wheel) in the benchmark's chat format, greedy, 32 new tokens,
through the evaluation's own generation path; a candidate is kept when the answer holds one of its
aliases as a whole word (:func:`grin_unlearn.data.knowledge.keep_answered`). Prints the kept share per
category. ``--verify`` instead evaluates the base on the packaged set as every model is evaluated
(role ``knowledge``, the TOFU protocol's 200 new tokens, keyword accuracy over the whole answer).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from grin_unlearn.data.knowledge import KNOWLEDGE_FILE, keep_answered, knowledge_candidates, knowledge_records
from grin_unlearn.evaluation import EvalConfig, evaluate
from grin_unlearn.experiments.real_benchmark import DEFAULT_REAL
from grin_unlearn.io_utils import atomic_write_text
from grin_unlearn.models import load_model, load_tokenizer
from grin_unlearn.models.pretrained import pretrained_folder

OUT = Path(__file__).resolve().parents[1] / "src" / "grin_unlearn" / "data" / KNOWLEDGE_FILE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_REAL.model)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--verify", action="store_true", help="evaluate the base on the packaged set instead")
    args = parser.parse_args()
    folder = pretrained_folder(args.model)
    model, tokenizer = load_model(str(folder), dtype="float32"), load_tokenizer(str(folder))
    if args.verify:
        result = evaluate(model, tokenizer, {"real_knowledge": knowledge_records()}, {"real_knowledge": "knowledge"},
                          DEFAULT_REAL.prompt_format, EvalConfig(mia=False))
        metrics = result["sets"]["real_knowledge"]["metrics"]
        print(f"base on the packaged set ({result['sets']['real_knowledge']['n']} questions): keyword accuracy "
              f"{metrics['keyword_accuracy']:.3f}, ROUGE-L recall {metrics['rouge_l_recall']:.3f}")
        return
    candidates = knowledge_candidates()
    result = evaluate(model, tokenizer, {"candidates": candidates}, {"candidates": "knowledge"},
                      DEFAULT_REAL.prompt_format, EvalConfig(max_new_tokens=32, mia=False))
    generations = result["sets"]["candidates"]["per_item"]["generation"]
    kept = keep_answered(candidates, generations)
    asked, answered = Counter(r["category"] for r in candidates), Counter(r["category"] for r in kept)
    for category in asked:
        print(f"{category:10s} {answered[category]:4d} / {asked[category]:4d}")
    print(f"{'all':10s} {len(kept):4d} / {len(candidates):4d}  -> {args.out}")
    atomic_write_text(args.out, json.dumps(kept, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
