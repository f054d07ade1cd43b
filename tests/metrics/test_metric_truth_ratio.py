"""Tests for grin_unlearn.metrics.truth_ratio (the reference implementation's form)."""

import math

import numpy as np
import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import truth_ratio_forget_score, truth_ratio_per_item, truth_ratio_retain_score


def test_issue_example_is_the_geometric_mean():
    """L_para = 0.7, L_pert = (1, 2, 3): R = exp(-mean(1, 2, 3)) / exp(-0.7) = exp(-1.3) = 0.27253;
    the arithmetic mean of the probabilities would give (e^-1 + e^-2 + e^-3)/3 / e^-0.7 = 0.3712 (the issue rounds it to 0.371)."""
    r = truth_ratio_per_item([0.7], [[1.0, 2.0, 3.0]])
    assert r.per_item[0] == pytest.approx(0.2725, abs=1e-4)
    assert r.per_item[0] == pytest.approx(math.exp(-2.0) / (math.exp(-0.7) + 1e-10), rel=1e-12)
    arithmetic = (math.exp(-1) + math.exp(-2) + math.exp(-3)) / 3 / math.exp(-0.7)
    assert arithmetic == pytest.approx(0.3712, abs=1e-4) and abs(r.per_item[0] - arithmetic) > 0.09


def _naive(para, pert, forget):
    """The reference's numpy code path, written out: aggregate_to_1D, exp, ratio, aggregator."""
    correct = np.exp(-np.array(para))
    wrong = np.exp(-np.mean(np.array(pert), axis=1))
    ratios = wrong / (correct + 1e-10)
    score = np.mean(np.minimum(ratios, 1 / (ratios + 1e-10))) if forget else np.mean(np.maximum(0, 1 - ratios))
    return ratios, score


def test_matches_a_naive_second_implementation():
    para = [0.7, 0.1, 2.5, 0.0, 40.0]
    pert = [[1.0, 2.0, 3.0], [0.1, 0.1, 0.1], [0.5, 4.0, 1.0], [0.3, 0.2, 0.9], [30.0, 31.0, 29.0]]
    ratios, forget = _naive(para, pert, forget=True)
    _, retain = _naive(para, pert, forget=False)
    r = truth_ratio_per_item(para, pert)
    assert r.per_item == pytest.approx(ratios.tolist(), rel=1e-12)
    assert truth_ratio_forget_score(r.per_item).value == pytest.approx(float(forget), rel=1e-12)
    assert truth_ratio_retain_score(r.per_item).value == pytest.approx(float(retain), rel=1e-12)
    # Item 4: exp(-40) ~ 4e-18 is below the 1e-10 guard, so R = exp(-30) / 1e-10 ~ 936, not e^10.
    assert r.per_item[4] == pytest.approx(math.exp(-30) / (math.exp(-40) + 1e-10))


def test_aggregates_by_hand():
    """R = (0.5, 1, 4): forget = mean(0.5, 1/(1+1e-10), 1/(4+1e-10)) = 1.75/3; retain = mean(0.5, 0, 0) = 1/6."""
    assert truth_ratio_forget_score([0.5, 1.0, 4.0]).value == pytest.approx(1.75 / 3)
    assert truth_ratio_retain_score([0.5, 1.0, 4.0]).value == pytest.approx(1 / 6)
    assert truth_ratio_forget_score([0.0]).per_item == [0.0]


def test_input_errors():
    with pytest.raises(UserInputError, match="lengths 2 and 1"):
        truth_ratio_per_item([1.0, 1.0], [[1.0]])
    with pytest.raises(UserInputError, match="paraphrased_loss"):
        truth_ratio_per_item([-0.7], [[1.0]])  # a log-probability passed instead of a loss
    with pytest.raises(UserInputError, match=r"perturbed_losses\[0\]"):
        truth_ratio_per_item([1.0], [[]])
    with pytest.raises(UserInputError, match="ratios"):
        truth_ratio_forget_score([])
    with pytest.raises(UserInputError, match="ratios"):
        truth_ratio_retain_score([-0.1])
