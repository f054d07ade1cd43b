"""Safety evaluation on harmful prompts: greedy generation, then :mod:`grin_unlearn.metrics.safety`.

For PKU-SafeRLHF (:class:`grin_unlearn.data.benchmark_adapters.PkuSafeRlhf`): each safety set is a list of
prompts; the model answers each greedily (:func:`grin_unlearn.evaluation.engine.generate_answers`, or the
generations an evaluated question/answer set already holds for the same prompts), and the answers
get the refusal rate, the harmful-keyword rate and, with a classifier, the classifier unsafe rate.
The three are registered metrics (:mod:`.set_metrics`) of the role ``safety``, listed in
:data:`SAFETY_PROTOCOL`. The results join ``eval.json`` as sets of role ``safety`` and as aggregates
``<metric>_<set>`` (``refusal_rate_forget``, ``harmful_keyword_rate_heldout``, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.benchmarks import SafetyPrompts
from ..data.formatting import PromptFormat
from ..errors import UserInputError
from ..metrics import classifier_unsafe_rate, harmful_keyword_rate, refusal_rate
from .config import EvalConfig
from .engine import generate_answers
from .set_metrics import Output, as_output, register_set_metric, run_protocol

SAFETY_ROLE = "safety"


class SafetyClassifier:
    """``P(unsafe | text)`` from a local text-classification model (``transformers`` pipeline).

    ``path`` is a folder saved with ``save_pretrained`` (model and tokenizer) of any
    ``AutoModelForSequenceClassification``; ``unsafe_label`` is the label in its ``id2label`` that
    means unsafe (matched case-insensitively). The pipeline applies softmax over the labels (sigmoid
    for a single-label model), and the generation alone is classified, truncated to the model's length.
    """

    def __init__(self, path: str | Path, unsafe_label: str = "unsafe", batch_size: int = 16):
        from transformers import pipeline

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise UserInputError(f"--safety-classifier: {folder} is not a model folder (expected a local "
                                 "text-classification model saved with save_pretrained)")
        device = 0 if torch.cuda.is_available() else -1
        self.pipe = pipeline("text-classification", model=str(folder), tokenizer=str(folder), device=device, top_k=None)
        labels = [str(label) for label in self.pipe.model.config.id2label.values()]
        matches = [label for label in labels if label.lower() == unsafe_label.lower()]
        if not matches:
            raise UserInputError(f"--safety-unsafe-label {unsafe_label}: not a label of {folder} "
                                 f"(its labels: {', '.join(labels)})")
        self.label, self.batch_size = matches[0], batch_size

    def __call__(self, texts: list[str]) -> list[float]:
        outputs = self.pipe([t if t.strip() else "." for t in texts], batch_size=self.batch_size, truncation=True)
        return [next(o["score"] for o in scores if o["label"] == self.label) for scores in outputs]


@dataclass(frozen=True)
class SafetyAnswers:
    """What the safety metrics read: the greedy answers, and the classifier when there is one."""

    generations: list[str]
    classifier: Callable[[list[str]], list[float]] | None = None


@register_set_metric("refusal_rate", (SAFETY_ROLE,), stage="generation")
def _refusal_rate(s: SafetyAnswers) -> Output:
    return as_output(refusal_rate(s.generations))


@register_set_metric("harmful_keyword_rate", (SAFETY_ROLE,), stage="generation")
def _harmful_keyword_rate(s: SafetyAnswers) -> Output:
    return as_output(harmful_keyword_rate(s.generations))


@register_set_metric("classifier_unsafe_rate", (SAFETY_ROLE,), stage="generation")
def _classifier_unsafe_rate(s: SafetyAnswers) -> Output:
    """Only with a classifier (``--safety-classifier``)."""
    return ({}, {}) if s.classifier is None else as_output(classifier_unsafe_rate(s.classifier(s.generations)))


# The metrics of a safety set, in the order eval.json holds them.
SAFETY_PROTOCOL = ["refusal_rate", "harmful_keyword_rate", "classifier_unsafe_rate"]


def evaluate_safety_set(model, tokenizer, prompts: list[str], fmt: PromptFormat, config: EvalConfig,
                        generations: list[str] | None = None, classifier=None) -> dict:
    """``{"role": "safety", "n", "metrics", "per_item"}`` of greedy answers to ``prompts``.

    ``generations`` (one per prompt, in order) replaces generation; ``classifier`` maps texts to
    ``P(unsafe)`` (a :class:`SafetyClassifier`, or any callable of that shape).
    """
    prompts = list(prompts)[:config.max_items]
    if not prompts:
        raise UserInputError("safety set: no prompts to evaluate")
    if generations is None:
        generations = generate_answers(model, tokenizer, prompts, fmt, config)
    generations = list(generations)[:len(prompts)]
    metrics, per_item = run_protocol(SafetyAnswers(generations, classifier), SAFETY_ROLE, SAFETY_PROTOCOL)
    per_item["prompt"], per_item["generation"] = prompts, generations
    return {"role": SAFETY_ROLE, "n": len(prompts), "metrics": metrics, "per_item": per_item}


def add_safety_results(result: dict, model, tokenizer, safety: dict[str, SafetyPrompts], fmt: PromptFormat,
                       config: EvalConfig, classifier=None) -> dict:
    """Evaluate every safety set into ``result`` (an ``eval.json`` dict) in place; returns ``result``.

    A set with ``generations_from`` reuses that evaluated set's generations when it has them for the
    same prompts (PKU's forget prompts: the forget set was already answered greedily).
    """
    for name, spec in safety.items():
        start = time.perf_counter()
        source = result["sets"].get(spec.generations_from or "", {}).get("per_item", {})
        reused = source.get("generation") or None  # answers to the first len(reused) prompts, in order
        prompts = list(spec.prompts)[:len(reused)] if reused else list(spec.prompts)
        entry = evaluate_safety_set(model, tokenizer, prompts, fmt, config, reused, classifier)
        entry["seconds"] = round(time.perf_counter() - start, 3)
        result["sets"][name] = entry
        suffix = name.removeprefix("safety_")
        for metric, value in entry["metrics"].items():
            result["aggregates"][f"{metric}_{suffix}"] = value
    return result
