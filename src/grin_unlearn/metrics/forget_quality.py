"""Forget quality (TOFU): are the unlearned model's truth ratios distributed like the oracle's?

TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121, Sec. 2.2.2)
runs a two-sample Kolmogorov-Smirnov test between the truth ratios of the unlearned model and of the
retain-only oracle on the forget set, and reports its p-value. High (near 1) = indistinguishable from
the oracle; below 0.05 = significantly different.
"""

from __future__ import annotations

from collections.abc import Sequence

from scipy.stats import ks_2samp

from grin_unlearn.metrics.result import MetricResult, as_floats

__all__ = ["forget_ks", "forget_ks_distance", "forget_quality"]


def forget_quality(
    model_truth_ratios: Sequence[float], oracle_truth_ratios: Sequence[float]
) -> MetricResult:
    """p-value of the two-sided two-sample KS test, ``scipy.stats.ks_2samp(model, oracle)``.

    The KS statistic is ``D = sup_x |F_model(x) - F_oracle(x)|`` over the empirical CDFs; the value
    is its p-value (scipy's default ``method="auto"``: exact for small samples). Identical samples
    give ``D = 0`` and p = 1.0.

    The TOFU code passes ``1/R`` rather than ``R``; since ``x -> 1/x`` is strictly monotone on
    positive reals, ``D`` and the p-value are the same either way. Set-level: ``per_item`` is empty.
    """
    return forget_ks(model_truth_ratios, oracle_truth_ratios)[0]


def forget_ks_distance(
    model_truth_ratios: Sequence[float], oracle_truth_ratios: Sequence[float]
) -> MetricResult:
    """The KS statistic ``D = sup_x |F_model(x) - F_oracle(x)|`` behind :func:`forget_quality`.

    Not a TOFU number: reported next to forget quality because, far below 0.05, the p-value of ``n``
    forget questions only takes the values of a ladder, one rung per ``1/n`` of ``D`` (with 48 questions
    0.0332, 0.0179, 0.0092, … for ``D`` = 14/48, 15/48, 16/48, …), each rung about half the last; means
    of a few such values compare poorly, and ``D`` (lower is closer to the oracle) compares linearly.
    """
    return forget_ks(model_truth_ratios, oracle_truth_ratios)[1]


def forget_ks(
    model_truth_ratios: Sequence[float], oracle_truth_ratios: Sequence[float]
) -> tuple[MetricResult, MetricResult]:
    """``(forget_quality, forget_ks_distance)`` from one two-sided ``scipy.stats.ks_2samp`` test."""
    model = as_floats("model_truth_ratios", model_truth_ratios, allow_inf=True)
    oracle = as_floats("oracle_truth_ratios", oracle_truth_ratios, allow_inf=True)
    result = ks_2samp(model, oracle, alternative="two-sided")
    return (MetricResult(name="forget_quality", value=float(result.pvalue), per_item=[]),
            MetricResult(name="forget_ks_distance", value=float(result.statistic), per_item=[]))
