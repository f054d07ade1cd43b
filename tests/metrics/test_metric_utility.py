"""Tests for grin_unlearn.metrics.utility."""

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import model_utility


def test_harmonic_mean_by_hand():
    """H(1, 0.5, 0.25) = 3 / (1/1 + 1/0.5 + 1/0.25) = 3 / (1 + 2 + 4) = 3/7."""
    r = model_utility({"retain_prob": 1.0, "retain_rouge": 0.5, "retain_truth_ratio": 0.25})
    assert r.name == "model_utility"
    assert r.value == pytest.approx(3 / 7)
    assert r.per_item == [1.0, 0.5, 0.25]


def test_zero_component_gives_zero():
    assert model_utility({"a": 0.9, "b": 0.0}).value == 0.0


def test_single_value_is_itself():
    assert model_utility({"a": 0.3}).value == pytest.approx(0.3)


def test_input_errors():
    with pytest.raises(UserInputError, match="'b'"):
        model_utility({"a": 0.5, "b": -0.1})
    with pytest.raises(UserInputError, match="values"):
        model_utility({})
    with pytest.raises(UserInputError, match="mapping"):
        model_utility([0.5])


def test_equals_scipy_hmean_of_nine_members():
    """The reference's hm_aggregate is scipy.stats.hmean over the 9 members."""
    from scipy.stats import hmean

    values = {f"m{i}": 0.1 + 0.09 * i for i in range(9)}
    assert model_utility(values).value == pytest.approx(float(hmean(list(values.values()))), rel=1e-12)
