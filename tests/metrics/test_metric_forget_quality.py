"""Tests for grin_unlearn.metrics.forget_quality."""

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import forget_ks_distance, forget_quality


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


def test_ks_distance_equals_a_hand_computation():
    """model = (1, 2, 3, 4), oracle = (3, 4, 5, 6): at x in [2, 3) F_model = 1/2 and F_oracle = 0, and no
    gap is larger, so D = 1/2. Identical samples give 0, disjoint ones 1."""
    r = forget_ks_distance([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    assert r.name == "forget_ks_distance" and r.value == pytest.approx(0.5) and r.per_item == []
    assert forget_ks_distance([0.2, 0.7], [0.2, 0.7]).value == 0.0
    assert forget_ks_distance([0.1, 0.2], [0.8, 0.9]).value == 1.0


def test_forget_quality_moves_in_steps_of_the_ks_distance():
    """48 against 48: shifting the model's ratios past one more oracle ratio raises D by 1/48, and the
    p-value falls by about half per step below 0.05 (the ladder docs/tuning.md describes)."""
    oracle = [i / 48 for i in range(48)]
    values = []
    for k in (14, 15, 16):
        model = [x + k / 48 - 1e-9 for x in oracle]
        assert forget_ks_distance(model, oracle).value == pytest.approx(k / 48)
        values.append(forget_quality(model, oracle).value)
    assert values[0] == pytest.approx(0.0332, abs=1e-4) and values[1] == pytest.approx(0.0179, abs=1e-4)
    assert 0.4 < values[2] / values[1] < 0.6
