"""Truth ratio (TOFU) and its two aggregates.

TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121, Sec. 2.2):

    R_truth = ( (1/|A_pert|) * sum_{a_hat in A_pert} P(a_hat|q)^(1/|a_hat|) ) / P(a_tilde|q)^(1/|a_tilde|)

with ``a_tilde`` the paraphrased correct answer and ``A_pert`` the perturbed (wrong) answers.
``R`` near 0 means the model prefers the correct answer; near 1, it cannot tell them apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import (
    MetricResult,
    as_floats,
    as_list,
    check_same_length,
    mean,
    register_metric,
)

__all__ = ["truth_ratio_forget_score", "truth_ratio_per_item", "truth_ratio_retain_score"]

# A mean log-probability is <= 0; allow float round-off before rejecting (a positive value is
# almost always a mean NLL passed by mistake).
_LOGP_TOL = 1e-6


def _mean_logps(arg: str, values: Sequence[float]) -> list[float]:
    out = as_floats(arg, values, allow_inf=True)
    for i, x in enumerate(out):
        if x > _LOGP_TOL or x == math.inf:
            raise UserInputError(f"`{arg}`[{i}] is a mean log-probability and must be <= 0, got {x}")
    return out


def _logmeanexp(xs: list[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(math.fsum(math.exp(x - m) for x in xs) / len(xs))


@register_metric("truth_ratio")
def truth_ratio_per_item(
    paraphrased_mean_logp: Sequence[float], perturbed_mean_logp: Sequence[Sequence[float]]
) -> MetricResult:
    """Per-item truth ratio ``R_i``, computed in log space.

    Inputs are per-token mean log-probabilities ``l = (1/|a|) log P(a|q)``, so
    ``P(a|q)^(1/|a|) = exp(l)``:

        log R_i = log( (1/J) sum_j exp(l_pert_ij) ) - l_para_i        (log-mean-exp for stability)

    This is the paper's formula (arithmetic mean of the perturbed probabilities), as in TOFU's
    ``evaluate_util.py``. Note: TOFU's ``aggregate_eval_stat.py`` averages the perturbed *losses*
    instead (a geometric mean of the probabilities), which gives ``R`` values no larger than these.

    ``value`` is the plain mean of ``R_i``, for logging only; the reported TOFU numbers are
    :func:`truth_ratio_forget_score` and :func:`truth_ratio_retain_score` of ``per_item``.
    """
    para = _mean_logps("paraphrased_mean_logp", paraphrased_mean_logp)
    pert = as_list("perturbed_mean_logp", perturbed_mean_logp)
    check_same_length("paraphrased_mean_logp", para, "perturbed_mean_logp", pert)
    per_item = []
    for i, (l_para, options) in enumerate(zip(para, pert)):
        l_pert = _mean_logps(f"perturbed_mean_logp[{i}]", options)
        if l_para == -math.inf:
            raise UserInputError(f"`paraphrased_mean_logp`[{i}] is -inf: the ratio is undefined")
        log_r = _logmeanexp(l_pert) - l_para
        per_item.append(math.exp(log_r) if log_r < 709.0 else math.inf)  # exp overflows past ~709.78
    return MetricResult(name="truth_ratio", value=mean(per_item), per_item=per_item)


def _ratios(ratios: Sequence[float]) -> list[float]:
    out = as_floats("ratios", ratios, allow_inf=True)
    for i, r in enumerate(out):
        if r < 0:
            raise UserInputError(f"`ratios`[{i}] is a truth ratio and must be >= 0, got {r}")
    return out


@register_metric("truth_ratio_forget")
def truth_ratio_forget_score(ratios: Sequence[float]) -> MetricResult:
    """TOFU truth-ratio score on the forget set: ``mean_i min(R_i, 1/R_i)``, in [0, 1].

    Per item ``min(R, 1/R)`` (``0`` when ``R`` is 0 or inf); 1 means the model cannot tell correct
    from wrong answers, the ideal after unlearning (TOFU reference code; arXiv 2401.06121).
    """
    per_item = [0.0 if r == 0.0 or math.isinf(r) else min(r, 1.0 / r) for r in _ratios(ratios)]
    return MetricResult(name="truth_ratio_forget", value=mean(per_item), per_item=per_item)


@register_metric("truth_ratio_retain")
def truth_ratio_retain_score(ratios: Sequence[float]) -> MetricResult:
    """TOFU truth-ratio score on retain / real authors / world facts: ``mean_i max(0, 1 - R_i)``.

    Higher is better (the model prefers the correct answer); this is the truth-ratio component of
    model utility (TOFU reference code; arXiv 2401.06121).
    """
    per_item = [max(0.0, 1.0 - r) for r in _ratios(ratios)]
    return MetricResult(name="truth_ratio_retain", value=mean(per_item), per_item=per_item)
