"""Truth ratio (TOFU) and its two aggregates, as the reference implementation computes them.

TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121, Sec. 2.2)
compares the model's length-normalised probability of a correct answer ``a_tilde`` (the paraphrased
answer on forget/retain, the answer itself on Real Authors/World Facts) with that of the perturbed
(wrong) answers ``A_pert``. The reference implementation (locuslab/open-unlearning,
``src/evals/metrics/memorization.py::truth_ratio``, which reproduces TOFU's ``aggregate_eval_stat.py``)
averages the perturbed answers' mean token losses ``L`` before exponentiating, i.e. takes the
*geometric* mean of their probabilities:

    R = exp(-(1/|A_pert|) * sum_j L_pert_j) / (exp(-L_para) + 1e-10)

Departure from the paper's text (which writes an arithmetic mean of probabilities) on purpose: the
reference's form is the one every published TOFU number uses. Example: ``L_para = 0.7``,
``L_pert = (1, 2, 3)`` gives ``R = exp(-2) / exp(-0.7) = exp(-1.3) = 0.2725`` (the arithmetic mean
would give 0.371). ``R`` near 0: the model prefers the correct answer; near 1: it cannot tell them apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_floats, as_list, check_same_length, mean

__all__ = ["truth_ratio_forget_score", "truth_ratio_per_item", "truth_ratio_retain_score"]

EPS = 1e-10  # the reference's guard in the denominator of R and of 1/R


def _losses(arg: str, values: Sequence[float]) -> list[float]:
    out = as_floats(arg, values, allow_inf=True)
    for i, x in enumerate(out):
        if x < -1e-6:
            raise UserInputError(f"`{arg}`[{i}] is a mean token loss (NLL) and must be >= 0, got {x}")
    return out


def truth_ratio_per_item(
    paraphrased_loss: Sequence[float], perturbed_losses: Sequence[Sequence[float]]
) -> MetricResult:
    """Per-item ``R_i = exp(-mean_j L_pert_ij) / (exp(-L_para_i) + 1e-10)``.

    Inputs are mean token NLLs ``L = -(1/|a|) log P(a|q)`` (the reference's ``avg_loss``): one per
    item for the correct answer, a list per item for the perturbed answers. ``value`` is the plain mean
    of ``R_i``, for logging only; the reported TOFU numbers are :func:`truth_ratio_forget_score` and
    :func:`truth_ratio_retain_score` of ``per_item``.
    """
    para = _losses("paraphrased_loss", paraphrased_loss)
    pert = as_list("perturbed_losses", perturbed_losses)
    check_same_length("paraphrased_loss", para, "perturbed_losses", pert)
    per_item = []
    for i, (l_para, options) in enumerate(zip(para, pert)):
        l_pert = mean(_losses(f"perturbed_losses[{i}]", options))
        per_item.append(math.exp(-l_pert) / (math.exp(-l_para) + EPS))
    return MetricResult(name="truth_ratio", value=mean(per_item), per_item=per_item)


def _ratios(ratios: Sequence[float]) -> list[float]:
    out = as_floats("ratios", ratios, allow_inf=True)
    for i, r in enumerate(out):
        if r < 0:
            raise UserInputError(f"`ratios`[{i}] is a truth ratio and must be >= 0, got {r}")
    return out


def truth_ratio_forget_score(ratios: Sequence[float]) -> MetricResult:
    """Forget-set score ``mean_i min(R_i, 1/(R_i + 1e-10))``, in [0, 1] (reference aggregator
    ``closer_to_1_better``): 1 means the model cannot tell correct from wrong answers, the ideal after
    unlearning.
    """
    per_item = [min(r, 1.0 / (r + EPS)) for r in _ratios(ratios)]
    return MetricResult(name="truth_ratio_forget", value=mean(per_item), per_item=per_item)


def truth_ratio_retain_score(ratios: Sequence[float]) -> MetricResult:
    """Retain / Real Authors / World Facts score ``mean_i max(0, 1 - R_i)`` (reference aggregator
    ``true_better``): higher is better; the truth-ratio member of model utility.
    """
    per_item = [max(0.0, 1.0 - r) for r in _ratios(ratios)]
    return MetricResult(name="truth_ratio_retain", value=mean(per_item), per_item=per_item)
