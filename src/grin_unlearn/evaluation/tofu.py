"""The TOFU protocol on question/answer sets, reproducing the reference implementation item by item.

Reference: locuslab/open-unlearning (``src/evals/metrics/memorization.py``, ``utils.py``, ``privacy.py``,
``mia/``; ``configs/eval/tofu_metrics/*.yaml``), which reproduces TOFU (Maini et al. 2024, arXiv
2401.06121). Per set role:

============  ==========================================================================================
role          metrics (reference metric names in brackets)
============  ==========================================================================================
forget        probability of ``answer`` [forget_Q_A_Prob]; ROUGE-L recall of the greedy generation
              [forget_Q_A_ROUGE]; truth ratio of ``paraphrased_answer`` against ``perturbed_answer``,
              scored ``mean min(R, 1/R)`` [forget_truth_ratio]; extraction strength, exact
              memorization; Min-K% (k = 0.4), LOSS and zlib scores for membership inference
retain        probability, ROUGE-L, truth ratio of ``paraphrased_answer`` scored ``mean max(0, 1 - R)``
              [retain_Q_A_Prob, retain_Q_A_ROUGE, retain_Truth_Ratio]
real_authors  probability of ``answer`` normalised over ``answer`` + ``perturbed_answer``; ROUGE-L;
world_facts   truth ratio of ``answer`` (not a paraphrase) scored ``mean max(0, 1 - R)``
              [ra_/wf_Q_A_Prob_normalised, ra_/wf_Q_A_ROUGE, ra_/wf_Truth_Ratio]
holdout       the membership-inference scores only (non-members of the forget set)
============  ==========================================================================================

Added on every generated set: keyword accuracy, with keywords derived from the gold answer when the
record has none (:func:`~grin_unlearn.metrics.derive_keywords`; written to ``per_item["keywords"]``).

Speed: every set's sequences — answers, paraphrases and perturbed answers — are encoded once and scored
in **one** teacher-forced sweep sorted by length (:func:`~.engine.score_examples`); each unique question
is generated once. In ``eval.json`` ``metrics["truth_ratio"]`` is the role's score while
``per_item["truth_ratio"]`` holds the raw ``R_i`` (None for an item without perturbed answers), the input
of forget quality.
"""

from __future__ import annotations

import math
import time

from ..data.formatting import PromptFormat
from ..errors import UserInputError
from ..metrics import (MetricResult, answer_probability, derive_keywords, exact_memorization,
                       extraction_strength, keyword_accuracy, loss_score, min_k_percent_score,
                       normalized_option_probability, rouge_scores, truth_ratio_forget_score,
                       truth_ratio_per_item, truth_ratio_retain_score, zlib_score)
from ..models import pad_token_id
from .config import EvalConfig
from .engine import AnswerScore, generate_with_config, score_examples

QA_ROLES = ("forget", "retain", "world_facts", "real_authors", "holdout")
OPTION_ROLES = ("world_facts", "real_authors")  # the probability is normalised over the options here
MIA_ROLES = ("forget", "holdout")
GENERATION_ROLES = ("forget", "retain", "world_facts", "real_authors")


def correct_answer(record: dict, role: str) -> str:
    """The truth ratio's correct answer: the paraphrase on forget/retain (reference ``*_Q_A_PARA_Prob``;
    the answer itself when a record has none), the answer on Real Authors / World Facts."""
    if role in OPTION_ROLES:
        return record["answer"]
    return record.get("paraphrased_answer") or record["answer"]


def _pairs(records: list[dict], role: str) -> list[tuple[str, str]]:
    pairs = [(r["question"], r["answer"]) for r in records]
    if role != "holdout":
        pairs += [(r["question"], correct_answer(r, role)) for r in records]
        pairs += [(r["question"], p) for r in records for p in r.get("perturbed_answer") or []]
    return pairs


def _put(metrics: dict, per_item: dict, result: MetricResult, key: str | None = None) -> None:
    metrics[key or result.name] = result.value
    per_item[key or result.name] = result.per_item


def _scatter(n: int, indices: list[int], values: list) -> list:
    out = [None] * n
    for i, v in zip(indices, values):
        out[i] = v
    return out


def _teacher_forced_metrics(records, role, scores, tokenizer, config) -> tuple[dict, dict]:
    n = len(records)
    gold = [scores[(r["question"], r["answer"])] for r in records]
    metrics, per_item = {}, {"answer_loss": [s.avg_loss for s in gold]}
    _put(metrics, per_item, answer_probability([s.sum_logp for s in gold], [max(s.count, 1) for s in gold]))
    _put(metrics, per_item, extraction_strength([s.argmax for s in gold], [s.labels for s in gold]))
    _put(metrics, per_item, exact_memorization([s.argmax for s in gold], [s.labels for s in gold]))
    if role != "holdout":
        with_options = [i for i, r in enumerate(records) if r.get("perturbed_answer")]
        correct = [scores[(r["question"], correct_answer(r, role))] for r in records]
        perturbed = [[scores[(r["question"], p)] for p in r.get("perturbed_answer") or []] for r in records]
        per_item["correct_loss"] = [s.avg_loss for s in correct]
        per_item["perturbed_loss"] = [[s.avg_loss for s in options] for options in perturbed]
        if with_options:
            ratios = truth_ratio_per_item([correct[i].avg_loss for i in with_options],
                                          [per_item["perturbed_loss"][i] for i in with_options])
            score = truth_ratio_forget_score if role == "forget" else truth_ratio_retain_score
            metrics["truth_ratio"] = score(ratios.per_item).value
            per_item["truth_ratio"] = _scatter(n, with_options, ratios.per_item)
            if role in OPTION_ROLES:
                normalized = normalized_option_probability(
                    [gold[i].probability for i in with_options],
                    [[s.probability for s in perturbed[i]] for i in with_options])
                metrics[normalized.name] = normalized.value
                per_item[normalized.name] = _scatter(n, with_options, normalized.per_item)
    if config.mia and role in MIA_ROLES:
        _put(metrics, per_item, loss_score([s.token_logps or [0.0] for s in gold]))
        texts = tokenizer.batch_decode([s.labels for s in gold], skip_special_tokens=True)
        _put(metrics, per_item, zlib_score([s.token_logps or [0.0] for s in gold], texts))
        _put(metrics, per_item, min_k_percent_score([s.token_logps for s in gold], config.min_k))
    return metrics, per_item


def _ground_truths(tokenizer, examples: list[dict]) -> tuple[list[str], list[str]]:
    """The reference's ROUGE target: the decoded conversation minus the decoded prompt, stripped."""
    kwargs = {"skip_special_tokens": True, "clean_up_tokenization_spaces": True}
    full = tokenizer.batch_decode([e["input_ids"] for e in examples], **kwargs)
    prompts = tokenizer.batch_decode([e["prompt_ids"] for e in examples], **kwargs)
    return [f.replace(p, "").strip() for f, p in zip(full, prompts)], prompts


def _generation_metrics(records, generations, ground_truths) -> tuple[dict, dict]:
    scores = rouge_scores(generations, ground_truths)
    metrics = {"rouge_l_recall": math.fsum(s["rougeL_recall"] for s in scores) / len(scores)}
    per_item = {"generation": list(generations), "ground_truth": ground_truths,
                "rouge_l_recall": [s["rougeL_recall"] for s in scores],
                "rouge1_recall": [s["rouge1_recall"] for s in scores], "rouge_l_f1": [s["rougeL_f1"] for s in scores]}
    given = [r.get("keywords") or None for r in records]
    keywords = [k if k else derive_keywords(r["question"], r["answer"]) for k, r in zip(given, records)]
    accuracy = keyword_accuracy(generations, [k or None for k in keywords], [r["answer"] for r in records])
    _put(metrics, per_item, accuracy)
    per_item["keywords"] = keywords
    per_item["keywords_derived"] = [k is None for k in given]
    return metrics, per_item


def evaluate_qa_sets(model, tokenizer, sets: dict[str, tuple[str, list[dict]]], fmt: PromptFormat,
                     config: EvalConfig, generations: dict[str, list[str]] | None = None,
                     timing: dict[str, float] | None = None) -> dict[str, dict]:
    """Evaluate question/answer sets together; returns set name -> ``{"role", "n", "metrics", "per_item"}``.

    ``sets`` maps a set name to ``(role, records)``; ``generations`` (set name -> one answer per
    record) replaces greedy generation for those sets. Records are used as given (caps applied by
    the caller). ``timing``, when given, receives the seconds of each phase: ``tokenise``,
    ``teacher_forcing``, ``generation`` and ``metrics``.
    """
    clock = _PhaseClock(timing if timing is not None else {})
    generations = dict(generations or {})
    for name, (role, records) in sets.items():
        if role not in QA_ROLES:
            raise UserInputError(f"set '{name}': role '{role}' is not a question/answer role ({', '.join(QA_ROLES)})")
        if name in generations and len(generations[name]) != len(records):
            raise UserInputError(f"set '{name}': generations: expected one per record ({len(records)}), "
                                 f"got {len(generations[name])}")
    pairs = list(dict.fromkeys(pair for role, records in sets.values() for pair in _pairs(records, role)))
    examples = dict(zip(pairs, fmt.encode_many(tokenizer, pairs)))
    clock.lap("tokenise")
    scored: list[AnswerScore] = score_examples(model, list(examples.values()), pad_token_id(tokenizer), config.batch_size)
    scores = dict(zip(examples, scored))
    clock.lap("teacher_forcing")

    to_generate = {name for name, (role, _) in sets.items()
                   if config.generation and role in GENERATION_ROLES and name not in generations}
    questions = list(dict.fromkeys(r["question"] for name in to_generate for r in sets[name][1]))
    if questions:
        gold_prompt = {r["question"]: examples[(r["question"], r["answer"])]["prompt_ids"]
                       for name in to_generate for r in sets[name][1]}
        texts = generate_with_config(model, tokenizer, [gold_prompt[q] for q in questions], config)
        answered = dict(zip(questions, texts))
        for name in to_generate:
            generations[name] = [answered[r["question"]] for r in sets[name][1]]
    clock.lap("generation")

    results = {}
    for name, (role, records) in sets.items():
        metrics, per_item = _teacher_forced_metrics(records, role, scores, tokenizer, config)
        if name in generations and role != "holdout":
            truths, prompts = _ground_truths(tokenizer, [examples[(r["question"], r["answer"])] for r in records])
            more_metrics, more_items = _generation_metrics(records, generations[name], truths)
            metrics.update(more_metrics)
            per_item.update(more_items, prompt=prompts)
        per_item["truncated"] = [examples[(r["question"], r["answer"])]["truncated"] for r in records]
        results[name] = {"role": role, "n": len(records), "metrics": metrics, "per_item": per_item}
    clock.lap("metrics")
    return results


class _PhaseClock:
    """Adds the seconds since the previous lap to ``timing[phase]``."""

    def __init__(self, timing: dict[str, float]):
        self.timing, self.last = timing, time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.timing[phase] = round(self.timing.get(phase, 0.0) + now - self.last, 3)
        self.last = now
