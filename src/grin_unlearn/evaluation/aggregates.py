"""Cross-set numbers as data: each one a registered function of the per-set results, the protocol a list
of their names.

An :class:`Aggregate` declares the set roles it reads, for each key it may leave None what the
user has to pass to get it (``needs``: ``format_summary`` names it), and which of its keys are
results-table columns (``columns``, with their titles; :func:`table_columns`). :data:`QA_AGGREGATES`
lists them in the order ``eval.json`` holds them, and :func:`aggregate` loops over it; the first set
of each role is the one read. A new cross-set number is one function registered here plus its name in
the list (``tests/test_set_metrics.py`` adds one). The per-set metrics are :mod:`.set_metrics`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ..metrics import forget_ks, mia_auc, model_utility, privleak
from ..metrics.reference_attack import reference_score
from .reference_logs import MIA_ATTACKS, OracleView, oracle_view
from .set_metrics import aggregated_keys, set_columns

logger = logging.getLogger(__name__)

UTILITY_ROLES = ("retain", "real_authors", "world_facts", "knowledge")
# The utility inputs of each role: metric key -> component label.
UTILITY_KEYS = {"retain": {"answer_probability": "probability", "rouge_l_recall": "rouge_l", "truth_ratio": "truth_ratio"},
                "knowledge": {"keyword_accuracy": "keyword_accuracy", "rouge_l_recall": "rouge_l"}}
OPTION_UTILITY_KEYS = {"normalized_option_probability": "probability", "rouge_l_recall": "rouge_l",
                       "truth_ratio": "truth_ratio"}
DEFAULT_ORACLE_AUC = 0.5  # the reference's PrivLeak reference AUC without retain logs (privleak.yaml ref_value)


@dataclass(frozen=True)
class AggregateInputs:
    """What an aggregate reads: the per-set results (``{name: {"role", "metrics", "per_item"}}``) and
    the oracle's view (None without ``--oracle``)."""

    sets: dict[str, dict]
    oracle: OracleView | None

    def first(self, role: str) -> dict | None:
        """The first set of ``role``, or None."""
        return next((s for s in self.sets.values() if s.get("role") == role), None)


@dataclass(frozen=True)
class Aggregate:
    name: str
    reads: tuple[str, ...]
    compute: Callable[[AggregateInputs], dict]
    needs: dict[str, str] = field(default_factory=dict)  # key -> what to pass when it stays None
    columns: dict[str, str] = field(default_factory=dict)  # key -> results-table column title


AGGREGATES: dict[str, Aggregate] = {}


def register_aggregate(name: str, reads: tuple[str, ...], needs: dict[str, str] | None = None,
                       columns: dict[str, str] | None = None):
    """Decorator: register ``fn(inputs: AggregateInputs) -> {key: value}`` as the aggregate ``name``."""

    def decorator(fn: Callable[[AggregateInputs], dict]) -> Callable[[AggregateInputs], dict]:
        if name in AGGREGATES:
            raise ValueError(f"aggregate {name!r} is already registered")
        AGGREGATES[name] = Aggregate(name, tuple(reads), fn, dict(needs or {}), dict(columns or {}))
        return fn

    return decorator


@register_aggregate("forget_quality", ("forget",), needs={"forget_quality": "--oracle"},
                    columns={"forget_quality": "forget quality ↑"})
def _forget_quality(inputs: AggregateInputs) -> dict:
    """TOFU (arXiv 2401.06121, Sec. 2.2.2): the p-value of the two-sample KS test between the forget-set
    truth ratios ``R_i`` of this model and of the oracle; ``forget_ks_distance`` is that test's ``D``
    (lower = closer), which compares linearly where the p-value moves in coarse steps."""
    result = {"forget_quality": None, "forget_ks_distance": None}
    forget = inputs.first("forget")
    if forget is None or inputs.oracle is None:
        return result
    model_ratios = [r for r in forget["per_item"].get("truth_ratio") or [] if r is not None]
    if model_ratios and inputs.oracle.truth_ratios:
        quality, distance = forget_ks(model_ratios, inputs.oracle.truth_ratios)
        result["forget_quality"], result["forget_ks_distance"] = quality.value, distance.value
    else:
        logger.warning("forget quality skipped: the %s has no forget-set truth ratios",
                       "model" if not model_ratios else "oracle")
    return result


def utility_components(inputs: AggregateInputs) -> dict[str, float]:
    """The inputs of model utility: probability (normalised over the options on Real Authors / World
    Facts), ROUGE-L and truth-ratio score of each utility set present; on a knowledge set (what a
    pretrained model knew, :mod:`grin_unlearn.data.knowledge`) keyword accuracy and ROUGE-L."""
    components = {}
    for role in UTILITY_ROLES:
        metrics = (inputs.first(role) or {}).get("metrics", {})
        for key, label in UTILITY_KEYS.get(role, OPTION_UTILITY_KEYS).items():
            if metrics.get(key) is not None:
                components[f"{role}_{label}"] = metrics[key]
    return components


@register_aggregate("model_utility", UTILITY_ROLES, columns={"model_utility": "model utility ↑"})
def _model_utility(inputs: AggregateInputs) -> dict:
    """The harmonic mean of :func:`utility_components` (None when no utility set is there)."""
    components = utility_components(inputs)
    return {"model_utility": model_utility(components).value if components else None}


@register_aggregate("per_set", ("forget", "retain"))
def _per_set(inputs: AggregateInputs) -> dict:
    """``forget_<label>`` / ``retain_<label>``: the per-set numbers that the protocol's metrics declare
    (:func:`~grin_unlearn.evaluation.set_metrics.aggregated_keys`), copied up for tables."""
    result = {}
    for role in ("forget", "retain"):
        metrics = (inputs.first(role) or {}).get("metrics", {})
        for key, label in aggregated_keys():
            result[f"{role}_{label}"] = metrics.get(key)
    return result


@register_aggregate("knowledge_accuracy", ("knowledge",), columns={"knowledge_accuracy": "knowledge acc ↑"})
def _knowledge_accuracy(inputs: AggregateInputs) -> dict:
    """Keyword accuracy on the knowledge set (questions the pretrained base answered correctly), when
    there is one: how much of what the model knew before fine-tuning survives."""
    knowledge = inputs.first("knowledge")
    return {} if knowledge is None else {"knowledge_accuracy": knowledge["metrics"].get("keyword_accuracy")}


@register_aggregate("mcq_accuracy", ("mcq",))
def _mcq_accuracy(inputs: AggregateInputs) -> dict:
    """Multiple-choice accuracy of the WMDP-style question set, when there is one."""
    mcq = inputs.first("mcq")
    return {} if mcq is None else {"mcq_accuracy": mcq["metrics"]["multiple_choice_accuracy"]}


@register_aggregate("membership", ("forget", "holdout"),
                    needs={**{f"mia_auc_{attack}": "a holdout set" for attack in MIA_ATTACKS},
                           "mia_auc_gradnorm": "--mia-gradnorm and a holdout set",
                           "mia_auc_reference": "--oracle and a holdout set", "privleak": "a holdout set"})
def _membership(inputs: AggregateInputs) -> dict:
    """``mia_auc_<attack>``: ROC AUC of each attack of :data:`MIA_ATTACKS` that was scored, forget set =
    members, holdout = non-members; ``mia_auc_reference``: the reference-model attack's, its reference
    the oracle (its per-item LOSS of the same sets); ``privleak``: the reference's PrivLeak of the Min-K%
    AUC against the oracle's (``privleak_reference_auc``; 0.5, the reference's default, without one)."""
    forget, holdout = inputs.first("forget"), inputs.first("holdout")
    result = {}
    for attack in MIA_ATTACKS:
        key, auc = f"mia_{attack}", None
        if forget is not None and holdout is not None and key in forget["per_item"] and key in holdout["per_item"]:
            auc = mia_auc(forget["per_item"][key], holdout["per_item"][key]).value
        result[f"mia_auc_{attack}"] = auc
    result["mia_auc_reference"] = None
    reference = inputs.oracle.losses if inputs.oracle is not None else {}
    if result["mia_auc_loss"] is not None and all(
            len(reference.get(role) or []) == len(entry["per_item"]["mia_loss"])
            for role, entry in (("forget", forget), ("holdout", holdout))):
        result["mia_auc_reference"] = mia_auc(
            reference_score(forget["per_item"]["mia_loss"], reference["forget"]).per_item,
            reference_score(holdout["per_item"]["mia_loss"], reference["holdout"]).per_item).value
    result["privleak"] = result["privleak_reference_auc"] = None
    if result["mia_auc_min_k"] is not None:
        reference_auc = inputs.oracle.mia_auc.get("min_k") if inputs.oracle is not None else None
        result["privleak_reference_auc"] = DEFAULT_ORACLE_AUC if reference_auc is None else reference_auc
        result["privleak"] = privleak(result["mia_auc_min_k"], result["privleak_reference_auc"]).value
    return result


@register_aggregate("muse", ("verbmem", "knowmem_forget", "knowmem_retain", "mia_forget", "mia_holdout"))
def _muse(inputs: AggregateInputs) -> dict:
    """MUSE's four numbers (arXiv 2407.06460): ``muse_verbmem_forget`` and ``muse_knowmem_forget`` (ROUGE-L
    F1, lower = forgotten), ``muse_utility`` (KnowMem on the retain set, utility preservation) and
    ``muse_privleak``: PrivLeak of the Min-K% AUC (forget texts = members, holdout = non-members;
    ``muse_mia_auc``) against the oracle's (``muse_privleak_reference_auc``; 0.5 without one)."""
    value = lambda role, key: (inputs.first(role) or {}).get("metrics", {}).get(key)  # noqa: E731
    result = {"muse_verbmem_forget": value("verbmem", "rouge_l_f1"),
              "muse_knowmem_forget": value("knowmem_forget", "rouge_l_f1"),
              "muse_utility": value("knowmem_retain", "rouge_l_f1"),
              "muse_mia_auc": None, "muse_privleak": None, "muse_privleak_reference_auc": None}
    forget, holdout = inputs.first("mia_forget"), inputs.first("mia_holdout")
    if forget is not None and holdout is not None:
        result["muse_mia_auc"] = mia_auc(forget["per_item"]["mia_min_k"], holdout["per_item"]["mia_min_k"]).value
        reference = inputs.oracle.muse_auc if inputs.oracle is not None else None
        result["muse_privleak_reference_auc"] = DEFAULT_ORACLE_AUC if reference is None else reference
        result["muse_privleak"] = privleak(result["muse_mia_auc"], result["muse_privleak_reference_auc"]).value
    return result


# The cross-set numbers of the question/answer protocol, in the order eval.json holds them.
QA_AGGREGATES = ["forget_quality", "model_utility", "per_set", "knowledge_accuracy", "mcq_accuracy", "membership",
                 "muse"]


def aggregate(sets: dict[str, dict], oracle: dict | OracleView | None = None,
              protocol: list[str] | None = None) -> dict:
    """Every aggregate of ``protocol`` (default :data:`QA_AGGREGATES`) over the per-set results, against
    the oracle (a retain-only model's ``eval.json`` dict, a reference ``TOFU_EVAL.json`` dict or its
    :class:`OracleView`; None: forget quality stays None); then ``model_utility_components``."""
    view = oracle if isinstance(oracle, OracleView) or oracle is None else oracle_view(oracle)
    inputs = AggregateInputs(sets, view)
    result: dict = {}
    for name in QA_AGGREGATES if protocol is None else protocol:
        result.update(AGGREGATES[name].compute(inputs))
    result["model_utility_components"] = utility_components(inputs)
    return result


def needs(protocol: list[str] | None = None) -> dict[str, str]:
    """``{key: what to pass}`` for every key the protocol's aggregates may leave None for want of an input."""
    return {key: what for name in (QA_AGGREGATES if protocol is None else protocol)
            for key, what in AGGREGATES[name].needs.items()}


def table_columns(protocol: list[str] | None = None,
                  set_protocol: list[str] | None = None) -> tuple[tuple[str, str], ...]:
    """``(aggregate key, title)`` of every results-table column, read from the declarations: the forget
    set's columns (per-set metrics of ``set_protocol``, default ``QA_PROTOCOL``, in its order), then the
    cross-set columns of ``protocol`` (default :data:`QA_AGGREGATES`), then the retain set's columns.
    The per-set ones are copied up by the ``per_set`` aggregate, so they need it in ``protocol``."""
    names = QA_AGGREGATES if protocol is None else protocol
    cross = [pair for name in names for pair in AGGREGATES[name].columns.items()]
    if "per_set" not in names:
        return tuple(cross)
    return tuple(set_columns("forget", set_protocol) + cross + set_columns("retain", set_protocol))
