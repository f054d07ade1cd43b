"""Answer probabilities as TOFU reports them.

TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121, Sec. 2.2)
uses the length-normalised conditional probability ``P(a|q)^(1/|a|)`` of the answer tokens:

* on the forget and retain sets, "Probability" is that value itself, averaged over items;
* on Real Authors and World Facts it is normalised over the options:
  ``P(a|q)^(1/|a|) / sum_{a' in {a} u A_pert} P(a'|q)^(1/|a'|)``.
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

)

__all__ = ["answer_probability", "normalized_option_probability"]

# Length-normalised probabilities are <= 1; allow float round-off from exp(log p) before rejecting.
_PROB_TOL = 1e-6


def _check_probs(arg: str, probs: list[float]) -> list[float]:
    for i, p in enumerate(probs):
        if not 0.0 <= p <= 1.0 + _PROB_TOL:
            raise UserInputError(f"`{arg}`[{i}] must be a probability in [0, 1], got {p}")
    return probs


def answer_probability(sum_logp: Sequence[float], count: Sequence[int]) -> MetricResult:
    """Length-normalised answer probability per item; aggregate = mean over items.

    ``p_i = exp(sum_logp_i / count_i) = exp(-mean token NLL_i) = P(a_i|q_i)^(1/|a_i|)``, where
    ``sum_logp_i`` is the summed log-probability (natural log) of the ``count_i`` answer tokens.
    TOFU "Probability" on the forget / retain sets (arXiv 2401.06121, Sec. 2.2).
    """
    logps = as_floats("sum_logp", sum_logp, allow_inf=True)
    counts = as_list("count", count)
    check_same_length("sum_logp", logps, "count", counts)
    per_item = []
    for i, (s, n) in enumerate(zip(logps, counts)):
        if isinstance(n, bool) or not float(n).is_integer() or n <= 0:
            raise UserInputError(f"`count`[{i}] must be a positive integer token count, got {n!r}")
        if s > 0:
            raise UserInputError(f"`sum_logp`[{i}] is a log-probability and must be <= 0, got {s}")
        per_item.append(math.exp(s / n))
    return MetricResult(name="answer_probability", value=mean(per_item), per_item=per_item)


def normalized_option_probability(
    correct_prob: Sequence[float], perturbed_probs: Sequence[Sequence[float]]
) -> MetricResult:
    """Probability of the correct option normalised over all options; aggregate = mean.

    ``p_i = P(c_i) / (P(c_i) + sum_j P(p_ij) + 1e-10)`` where every ``P`` is already length-normalised
    (``P(a|q)^(1/|a|)``, e.g. from :func:`answer_probability`), ``c_i`` is the correct answer and
    ``p_ij`` are its perturbed (wrong) answers. TOFU "Probability" on Real Authors and World Facts
    (arXiv 2401.06121, Sec. 2.2); the ``1e-10`` is the reference implementation's
    (open-unlearning ``probability_w_options``), so an item whose options all have probability 0 scores 0.
    """
    correct = _check_probs("correct_prob", as_floats("correct_prob", correct_prob))
    perturbed = as_list("perturbed_probs", perturbed_probs)
    check_same_length("correct_prob", correct, "perturbed_probs", perturbed)
    per_item = []
    for i, (c, options) in enumerate(zip(correct, perturbed)):
        wrong = _check_probs(f"perturbed_probs[{i}]", as_floats(f"perturbed_probs[{i}]", options))
        per_item.append(c / (c + math.fsum(wrong) + 1e-10))
    return MetricResult(name="normalized_option_probability", value=mean(per_item), per_item=per_item)
