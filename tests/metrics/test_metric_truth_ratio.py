"""Tests for grin_unlearn.metrics.truth_ratio."""

import math

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import truth_ratio_forget_score, truth_ratio_per_item, truth_ratio_retain_score


def test_three_item_example_by_hand():
    """Length-normalised probabilities (inputs are their logs):

    item | P(paraphrased) | P(perturbed_j) | mean_j P(pert) | R = mean / P(para)
    -----+----------------+----------------+----------------+--------------------
      0  |      0.5       |  0.25, 0.25    |     0.25       |   0.5
      1  |      0.2       |  0.1,  0.3     |     0.2        |   1.0
      2  |      0.1       |  0.4           |     0.4        |   4.0

    (Item 1 checks the arithmetic mean of the paper: a geometric mean would give sqrt(0.03)/0.2.)

    Forget score = mean(min(R, 1/R)) = (0.5 + 1.0 + 0.25) / 3 = 1.75 / 3 = 0.58333...
    Retain score = mean(max(0, 1 - R)) = (0.5 + 0 + 0) / 3 = 1/6.
    """
    log = math.log
    r = truth_ratio_per_item(
        [log(0.5), log(0.2), log(0.1)],
        [[log(0.25), log(0.25)], [log(0.1), log(0.3)], [log(0.4)]],
    )
    assert r.name == "truth_ratio"
    assert r.per_item == pytest.approx([0.5, 1.0, 4.0])
    assert r.value == pytest.approx(5.5 / 3)

    forget = truth_ratio_forget_score(r.per_item)
    assert forget.per_item == pytest.approx([0.5, 1.0, 0.25])
    assert forget.value == pytest.approx(1.75 / 3)

    retain = truth_ratio_retain_score(r.per_item)
    assert retain.per_item == pytest.approx([0.5, 0.0, 0.0])
    assert retain.value == pytest.approx(1 / 6)


def test_log_space_is_stable_for_tiny_probabilities():
    """Mean log-probs of -1000 underflow exp(); in log space R = exp(-1000 - (-1001)) = e."""
    r = truth_ratio_per_item([-1001.0], [[-1000.0, -1000.0]])
    assert r.per_item == pytest.approx([math.e])


def test_extreme_ratios_in_aggregates():
    """R = 0 and R = inf both mean 'fully distinguishable' (forget score 0)."""
    assert truth_ratio_forget_score([0.0, math.inf]).per_item == [0.0, 0.0]
    assert truth_ratio_retain_score([0.0, math.inf]).per_item == [1.0, 0.0]


def test_input_errors():
    with pytest.raises(UserInputError, match="lengths 2 and 1"):
        truth_ratio_per_item([-1.0, -1.0], [[-1.0]])
    with pytest.raises(UserInputError, match="paraphrased_mean_logp"):
        truth_ratio_per_item([0.7], [[-1.0]])  # a mean NLL passed instead of a mean log-prob
    with pytest.raises(UserInputError, match=r"perturbed_mean_logp\[0\]"):
        truth_ratio_per_item([-1.0], [[]])
    with pytest.raises(UserInputError, match="ratios"):
        truth_ratio_forget_score([])
    with pytest.raises(UserInputError, match="ratios"):
        truth_ratio_retain_score([-0.1])
