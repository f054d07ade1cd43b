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
              memorization; Min-K% (k = 0.4), Min-K%++ (k = 0.4), LOSS and zlib scores for membership
              inference, GradNorm (p = 2) when asked; the reference-model attack is a cross-set number
retain        probability, ROUGE-L, truth ratio of ``paraphrased_answer`` scored ``mean max(0, 1 - R)``
              [retain_Q_A_Prob, retain_Q_A_ROUGE, retain_Truth_Ratio]
real_authors  probability of ``answer`` normalised over ``answer`` + ``perturbed_answer``; ROUGE-L;
world_facts   truth ratio of ``answer`` (not a paraphrase) scored ``mean max(0, 1 - R)``
              [ra_/wf_Q_A_Prob_normalised, ra_/wf_Q_A_ROUGE, ra_/wf_Truth_Ratio]
holdout       the membership-inference scores only (non-members of the forget set)
knowledge     what a pretrained model knew before fine-tuning (``real_knowledge``, not trained on):
              ROUGE-L and keyword accuracy of the greedy generation (this project's set, no reference
              counterpart; its answers are short forms, so no probability metric reads it)
============  ==========================================================================================

Added on every generated set: keyword accuracy, with keywords derived from the gold answer when the
record has none (:func:`~grin_unlearn.metrics.derive_keywords`; written to ``per_item["keywords"]``).
The metrics are registered functions listed by the protocol (:mod:`.set_metrics`); this module
scores and generates once for all of them.

Speed: every set's sequences — answers, paraphrases and perturbed answers — are encoded once and scored
in **one** teacher-forced sweep, each question's prompt and its answers' shared starts run once (a
token tree per question, :func:`~.shared_prefix.score_with_shared_prefixes`); each unique question is generated once, starting
from the tokens the teacher-forced pass already fixes (:func:`~.draft_decoding.generate_from_drafts`).
In ``eval.json`` ``metrics["truth_ratio"]`` is the role's score while
``per_item["truth_ratio"]`` holds the raw ``R_i`` (None for an item without perturbed answers), the input
of forget quality.
"""

from __future__ import annotations

import logging
import time

from ..data.formatting import PromptFormat
from ..errors import UserInputError
from ..models import pad_token_id
from .config import EvalConfig
from .draft_decoding import generate_from_drafts
from .engine import AnswerScore
from .gradient_norms import gradient_norms
from .shared_prefix import score_with_shared_prefixes
from .set_metrics import GENERATION_ROLES, MIA_ROLES, SetScores, correct_answer, set_metrics

logger = logging.getLogger(__name__)
QA_ROLES = ("forget", "retain", "world_facts", "real_authors", "holdout", "knowledge")


def _pairs(records: list[dict], role: str) -> list[tuple[str, str]]:
    pairs = [(r["question"], r["answer"]) for r in records]
    if role != "holdout":
        pairs += [(r["question"], correct_answer(r, role)) for r in records]
        pairs += [(r["question"], p) for r in records for p in r.get("perturbed_answer") or []]
    return pairs


def _ground_truths(tokenizer, examples: list[dict]) -> tuple[list[str], list[str]]:
    """The reference's ROUGE target: the decoded conversation minus the decoded prompt, stripped."""
    kwargs = {"skip_special_tokens": True, "clean_up_tokenization_spaces": True}
    full = tokenizer.batch_decode([e["input_ids"] for e in examples], **kwargs)
    prompts = tokenizer.batch_decode([e["prompt_ids"] for e in examples], **kwargs)
    return [f.replace(p, "").strip() for f, p in zip(full, prompts)], prompts


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
    _note_pad_inside(tokenizer, examples.values())
    clock.lap("tokenise")
    # The membership sets' answers: Min-K%++ reads their next-token moments, GradNorm their gradients.
    members = {(r["question"], r["answer"]) for role, records in sets.values() if role in MIA_ROLES
               for r in records} if config.mia else set()
    moments = {i for i, pair in enumerate(examples) if pair in members}
    scored: list[AnswerScore] = score_with_shared_prefixes(model, list(examples.values()), pad_token_id(tokenizer),
                                                           config.batch_size, with_moments=moments)
    scores = dict(zip(examples, scored))
    clock.lap("teacher_forcing")
    grad_norms = None
    if members and config.mia_gradnorm:
        pairs_in_order = [pair for pair in examples if pair in members]
        grad_norms = dict(zip(pairs_in_order, gradient_norms(model, [examples[pair] for pair in pairs_in_order])))
        clock.lap("gradient_norms")

    to_generate = {name for name, (role, _) in sets.items()
                   if config.generation and role in GENERATION_ROLES and name not in generations}
    questions = list(dict.fromkeys(r["question"] for name in to_generate for r in sets[name][1]))
    if questions:
        gold = {}  # question -> its first record's (question, answer): the prompt and the draft
        for name in to_generate:
            for r in sets[name][1]:
                gold.setdefault(r["question"], (r["question"], r["answer"]))
        texts = generate_from_drafts(model, tokenizer, [examples[gold[q]]["prompt_ids"] for q in questions],
                                     [(examples[gold[q]], scores[gold[q]]) for q in questions], config)
        answered = dict(zip(questions, texts))
        for name in to_generate:
            generations[name] = [answered[r["question"]] for r in sets[name][1]]
    clock.lap("generation")

    results = {}
    for name, (role, records) in sets.items():
        set_scores = SetScores(role, records, scores, tokenizer, config.min_k, grad_norms=grad_norms)
        generated = name in generations and role in GENERATION_ROLES
        if generated:
            set_scores.generations = generations[name]
            set_scores.ground_truths, prompts = _ground_truths(
                tokenizer, [examples[(r["question"], r["answer"])] for r in records])
        metrics, per_item = set_metrics(set_scores, config.mia)
        if generated:
            per_item["prompt"] = prompts
        per_item["truncated"] = [examples[(r["question"], r["answer"])]["truncated"] for r in records]
        results[name] = {"role": role, "n": len(records), "metrics": metrics, "per_item": per_item}
    clock.lap("metrics")
    return results


def _note_pad_inside(tokenizer, examples) -> None:
    """Say when the pad token occurs inside the scored sequences (SmolLM2's and Llama-3's chat templates
    end every turn with their pad = EOS token): the reference's collator builds its attention mask as
    ``input_ids != pad`` and so masks those tokens, which moves its per-item values on such a model by
    up to tens of percent; ours attend to every real token (docs/evaluation.md)."""
    pad = pad_token_id(tokenizer)
    if any(pad in e["input_ids"][:-1] for e in examples):
        logger.info("the pad token (id %d, %r) occurs inside the formatted sequences: open-unlearning masks "
                    "every such token from attention, so its per-item values on this model differ from these",
                    pad, tokenizer.convert_ids_to_tokens(pad))


class _PhaseClock:
    """Adds the seconds since the previous lap to ``timing[phase]``."""

    def __init__(self, timing: dict[str, float]):
        self.timing, self.last = timing, time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.timing[phase] = round(self.timing.get(phase, 0.0) + now - self.last, 3)
        self.last = now
