"""Per-set metrics as data: each one a registered function, each protocol a list of their names.

A :class:`SetMetric` declares the set roles it reads, the stage it needs (``teacher_forcing``: the
scored answers; ``generation``: the greedy answers; ``mia``: the membership scores, which
``EvalConfig.mia`` switches off), which of its numbers the cross-set aggregates copy up as
``forget_<label>`` / ``retain_<label>`` and which of those are columns of the results tables, with
their titles (:func:`~grin_unlearn.evaluation.aggregates.table_columns`). :data:`QA_PROTOCOL` lists
the metrics of a question/answer set in the order they are computed and written;
:func:`~grin_unlearn.evaluation.tofu.evaluate_qa_sets` loops over it. A new metric is one function
registered here plus its name in the list; the aggregates and the tables pick it up from the
declaration (``tests/test_set_metrics.py`` adds one). The metrics of multiple-choice, raw-text and
safety sets register in the same registry from the modules that hold their model passes
(:mod:`.multiple_choice`, :mod:`.safety`), each kind with its own list; :func:`run_protocol` runs any list.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from ..metrics import (answer_probability, derive_keywords, exact_memorization, extraction_strength,
                       keyword_accuracy, loss_score, min_k_percent_score, normalized_option_probability,
                       rouge_scores, truth_ratio_forget_score, truth_ratio_per_item, truth_ratio_retain_score,
                       zlib_score)
from ..metrics.gradnorm import gradnorm_score
from ..metrics.min_k_plus_plus import min_k_plus_plus_score

OPTION_ROLES = ("world_facts", "real_authors")  # the probability is normalised over the options here
MIA_ROLES = ("forget", "holdout")
TRUTH_ROLES = ("forget", "retain", "world_facts", "real_authors")
GENERATION_ROLES = (*TRUTH_ROLES, "knowledge")
# Not "knowledge": its answers are short canonical forms ("Paris"), not what the model says in a
# sentence, so their probability measures phrasing, not knowledge.
ANSWER_ROLES = ("forget", "retain", "world_facts", "real_authors", "holdout")
STAGES = ("teacher_forcing", "generation", "mia")


def correct_answer(record: dict, role: str) -> str:
    """The truth ratio's correct answer: the paraphrase on forget/retain (reference ``*_Q_A_PARA_Prob``;
    the answer itself when a record has none), the answer on Real Authors / World Facts."""
    if role in OPTION_ROLES:
        return record["answer"]
    return record.get("paraphrased_answer") or record["answer"]


@dataclass
class SetScores:
    """What the metrics of one set read: its records and role, the teacher-forced scores of every
    (question, answer) pair, and, when generated, the greedy answers and the reference's ROUGE targets."""

    role: str
    records: list[dict]
    scores: dict
    tokenizer: object
    min_k: float
    generations: list[str] | None = None
    ground_truths: list[str] | None = None
    grad_norms: dict | None = None  # (question, answer) -> per-parameter gradient norms (GradNorm), when run

    @cached_property
    def gold(self) -> list:
        return [self.scores[(r["question"], r["answer"])] for r in self.records]

    @cached_property
    def with_options(self) -> list[int]:
        """Indices of the records that have perturbed answers."""
        return [i for i, r in enumerate(self.records) if r.get("perturbed_answer")]

    @cached_property
    def perturbed(self) -> list[list]:
        return [[self.scores[(r["question"], p)] for p in r.get("perturbed_answer") or []] for r in self.records]


Output = tuple[dict, dict]  # (set-level metrics, per-item lists)


@dataclass(frozen=True)
class SetMetric:
    name: str
    roles: tuple[str, ...]
    stage: str
    compute: Callable[[SetScores], Output]
    aggregate_as: dict[str, str] = field(default_factory=dict)  # metric key -> label of forget_/retain_<label>
    columns: dict[str, dict[str, str]] = field(default_factory=dict)  # metric key -> {role: column title}


SET_METRICS: dict[str, SetMetric] = {}


def register_set_metric(name: str, roles: tuple[str, ...], stage: str = "teacher_forcing",
                        aggregate_as: dict[str, str] | None = None,
                        columns: dict[str, dict[str, str]] | None = None):
    """Decorator: register ``fn(inputs) -> (metrics, per_item)`` as the metric ``name``; ``inputs`` is
    what its set kind's metrics read (:class:`SetScores` for a question/answer set).

    ``columns`` ``{metric key: {role: title}}`` makes ``<role>_<label>`` a results-table column, for
    a key of ``aggregate_as`` and the roles ``forget`` / ``retain`` (the ones copied up)."""
    if stage not in STAGES:
        raise ValueError(f"metric {name!r}: stage {stage!r} is not one of {STAGES}")
    for key, titles in (columns or {}).items():
        if key not in (aggregate_as or {}) or set(titles) - {"forget", "retain"}:
            raise ValueError(f"metric {name!r}: column {key!r} must be a key of aggregate_as, "
                             f"titled for the roles 'forget' / 'retain'")

    def decorator(fn: Callable[[SetScores], Output]) -> Callable[[SetScores], Output]:
        if name in SET_METRICS:
            raise ValueError(f"set metric {name!r} is already registered")
        SET_METRICS[name] = SetMetric(name, tuple(roles), stage, fn, dict(aggregate_as or {}), dict(columns or {}))
        return fn

    return decorator


def _scatter(n: int, indices: list[int], values: list) -> list:
    out = [None] * n
    for i, v in zip(indices, values):
        out[i] = v
    return out


def as_output(result) -> Output:
    """A :class:`~grin_unlearn.metrics.MetricResult` as ``({name: value}, {name: per_item})``."""
    return {result.name: result.value}, {result.name: result.per_item}


@register_set_metric("answer_probability", ANSWER_ROLES, aggregate_as={"answer_probability": "probability"})
def _answer_probability(s: SetScores) -> Output:
    metrics, per_item = as_output(answer_probability([g.sum_logp for g in s.gold], [max(g.count, 1) for g in s.gold]))
    return metrics, {"answer_loss": [g.avg_loss for g in s.gold], **per_item}


@register_set_metric("extraction_strength", ANSWER_ROLES, aggregate_as={"extraction_strength": "extraction_strength"})
def _extraction_strength(s: SetScores) -> Output:
    return as_output(extraction_strength([g.argmax for g in s.gold], [g.labels for g in s.gold]))


@register_set_metric("exact_memorization", ANSWER_ROLES, aggregate_as={"exact_memorization": "exact_memorization"})
def _exact_memorization(s: SetScores) -> Output:
    return as_output(exact_memorization([g.argmax for g in s.gold], [g.labels for g in s.gold]))


@register_set_metric("truth_ratio", TRUTH_ROLES, aggregate_as={"truth_ratio": "truth_ratio"},
                     columns={"truth_ratio": {"forget": "forget truth ratio"}})
def _truth_ratio(s: SetScores) -> Output:
    """``metrics["truth_ratio"]`` is the role's score, ``per_item["truth_ratio"]`` the raw ``R_i``."""
    correct = [s.scores[(r["question"], correct_answer(r, s.role))] for r in s.records]
    per_item = {"correct_loss": [c.avg_loss for c in correct],
                "perturbed_loss": [[p.avg_loss for p in options] for options in s.perturbed]}
    if not s.with_options:
        return {}, per_item
    ratios = truth_ratio_per_item([correct[i].avg_loss for i in s.with_options],
                                  [per_item["perturbed_loss"][i] for i in s.with_options])
    score = truth_ratio_forget_score if s.role == "forget" else truth_ratio_retain_score
    per_item["truth_ratio"] = _scatter(len(s.records), s.with_options, ratios.per_item)
    return {"truth_ratio": score(ratios.per_item).value}, per_item


@register_set_metric("normalized_option_probability", OPTION_ROLES)
def _normalized_option_probability(s: SetScores) -> Output:
    if not s.with_options:
        return {}, {}
    result = normalized_option_probability([s.gold[i].probability for i in s.with_options],
                                           [[p.probability for p in s.perturbed[i]] for i in s.with_options])
    return {result.name: result.value}, {result.name: _scatter(len(s.records), s.with_options, result.per_item)}


@register_set_metric("membership", MIA_ROLES, stage="mia")
def _membership(s: SetScores) -> Output:
    """LOSS, zlib and Min-K% scores of each answer (the membership-inference attacks' inputs)."""
    metrics, per_item = as_output(loss_score([g.token_logps or [0.0] for g in s.gold]))
    texts = s.tokenizer.batch_decode([g.labels for g in s.gold], skip_special_tokens=True)
    for result in (zlib_score([g.token_logps or [0.0] for g in s.gold], texts),
                   min_k_percent_score([g.token_logps for g in s.gold], s.min_k)):
        metrics[result.name], per_item[result.name] = result.value, result.per_item
    return metrics, per_item


@register_set_metric("min_k_plus_plus", MIA_ROLES, stage="mia")
def _min_k_plus_plus(s: SetScores) -> Output:
    """Min-K%++ scores of each answer (its tokens standardised by the next-token distribution)."""
    return as_output(min_k_plus_plus_score([g.token_logps for g in s.gold], [g.vocab_mean or [] for g in s.gold],
                                           [g.vocab_var or [] for g in s.gold], s.min_k))


@register_set_metric("gradnorm", MIA_ROLES, stage="mia")
def _gradnorm(s: SetScores) -> Output:
    """GradNorm scores of each answer, when the evaluation ran its backward passes (``mia_gradnorm``)."""
    if s.grad_norms is None:
        return {}, {}
    return as_output(gradnorm_score([s.grad_norms[(r["question"], r["answer"])] for r in s.records]))


@register_set_metric("rouge", GENERATION_ROLES, stage="generation", aggregate_as={"rouge_l_recall": "rouge_l"},
                     columns={"rouge_l_recall": {"forget": "forget ROUGE-L ↓", "retain": "retain ROUGE-L ↑"}})
def _rouge(s: SetScores) -> Output:
    scores = rouge_scores(s.generations, s.ground_truths)
    metrics = {"rouge_l_recall": math.fsum(x["rougeL_recall"] for x in scores) / len(scores)}
    return metrics, {"generation": list(s.generations), "ground_truth": s.ground_truths,
                     "rouge_l_recall": [x["rougeL_recall"] for x in scores],
                     "rouge1_recall": [x["rouge1_recall"] for x in scores],
                     "rouge_l_f1": [x["rougeL_f1"] for x in scores]}


@register_set_metric("keyword_accuracy", GENERATION_ROLES, stage="generation",
                     aggregate_as={"keyword_accuracy": "keyword_accuracy"},
                     columns={"keyword_accuracy": {"forget": "forget keyword acc ↓", "retain": "retain keyword acc ↑"}})
def _keyword_accuracy(s: SetScores) -> Output:
    """Keywords derived from the gold answer when a record has none (written to ``per_item["keywords"]``)."""
    given = [r.get("keywords") or None for r in s.records]
    keywords = [k if k else derive_keywords(r["question"], r["answer"]) for k, r in zip(given, s.records)]
    result = keyword_accuracy(s.generations, [k or None for k in keywords], [r["answer"] for r in s.records])
    return {result.name: result.value}, {result.name: result.per_item, "keywords": keywords,
                                         "keywords_derived": [k is None for k in given]}


# The question/answer protocol (TOFU's metrics plus keyword accuracy), in the order eval.json holds them.
QA_PROTOCOL = ["answer_probability", "extraction_strength", "exact_memorization", "truth_ratio",
               "normalized_option_probability", "membership", "min_k_plus_plus", "gradnorm", "rouge",
               "keyword_accuracy"]


def run_protocol(inputs, role: str, protocol: list[str],
                 skip: Callable[[SetMetric], bool] = lambda metric: False) -> Output:
    """Every metric of ``protocol`` that reads ``role`` and is not skipped, computed on ``inputs`` (what
    its functions read: :class:`SetScores` for a question/answer set) and merged in list order."""
    metrics, per_item = {}, {}
    for name in protocol:
        metric = SET_METRICS[name]
        if role not in metric.roles or skip(metric):
            continue
        more_metrics, more_items = metric.compute(inputs)
        metrics.update(more_metrics)
        per_item.update(more_items)
    return metrics, per_item


def set_metrics(s: SetScores, mia: bool, protocol: list[str] | None = None) -> Output:
    """Every metric of ``protocol`` (default :data:`QA_PROTOCOL`) that applies to the question/answer
    set: its role is one the metric reads, membership scores only with ``mia``, generation metrics only
    with answers."""
    return run_protocol(s, s.role, QA_PROTOCOL if protocol is None else protocol,
                        lambda metric: (metric.stage == "mia" and not mia)
                        or (metric.stage == "generation" and s.generations is None))


def aggregated_keys(protocol: list[str] | None = None) -> list[tuple[str, str]]:
    """``(metric key, label)`` of every number the protocol's metrics copy up as ``forget_/retain_<label>``."""
    return [pair for name in (QA_PROTOCOL if protocol is None else protocol)
            for pair in SET_METRICS[name].aggregate_as.items()]


def set_columns(role: str, protocol: list[str] | None = None) -> list[tuple[str, str]]:
    """``(aggregate key, title)`` of the results-table columns the protocol's metrics declare for ``role``."""
    return [(f"{role}_{metric.aggregate_as[key]}", titles[role])
            for metric in (SET_METRICS[name] for name in (QA_PROTOCOL if protocol is None else protocol))
            for key, titles in metric.columns.items() if role in titles]
