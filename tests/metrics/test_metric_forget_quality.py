"""Tests for grin_unlearn.metrics.forget_quality."""

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import forget_quality


def test_identical_samples_give_one():
    """Identical samples: D = sup |F1 - F2| = 0, so the p-value is 1."""
    ratios = [0.1, 0.4, 0.5, 0.8, 0.9, 1.3]
    r = forget_quality(ratios, list(ratios))
    assert r.name == "forget_quality"
    assert r.value == pytest.approx(1.0)
    assert r.per_item == []


def test_clearly_different_samples_are_significant():
    """Disjoint samples of 20 each: D = 1; the exact two-sided p-value is 2 / C(40, 20) ~ 1.5e-11."""
    model = [0.01 * i for i in range(20)]
    oracle = [0.5 + 0.01 * i for i in range(20)]
    assert forget_quality(model, oracle).value < 0.05


def test_input_errors():
    with pytest.raises(UserInputError, match="model_truth_ratios"):
        forget_quality([], [0.5])
    with pytest.raises(UserInputError, match="oracle_truth_ratios"):
        forget_quality([0.5], [float("nan")])


def test_same_p_value_as_the_reference_transform():
    """The reference passes 1/(R + 1e-10) to ks_2samp; KS is rank-based, so the p-value is the same."""
    from scipy.stats import ks_2samp

    model = [0.05, 0.2, 0.31, 0.7, 1.4, 2.2, 0.9]
    oracle = [0.5, 0.6, 0.66, 0.8, 1.1, 1.9]
    inverse = ks_2samp([1 / (r + 1e-10) for r in model], [1 / (r + 1e-10) for r in oracle]).pvalue
    assert forget_quality(model, oracle).value == pytest.approx(float(inverse), rel=1e-12)
