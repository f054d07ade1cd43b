"""Tests for grin_unlearn.metrics.probability."""

import math

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import answer_probability, normalized_option_probability


def test_answer_probability_hand_values():
    """Item 0: 3 tokens each with p = 0.5 -> sum log p = 3 log 0.5 -> exp(log 0.5) = 0.5.
    Item 1: 5 tokens with p = 1 -> sum 0 -> 1.0. Mean = 0.75.
    """
    r = answer_probability([3 * math.log(0.5), 0.0], [3, 5])
    assert r.name == "answer_probability"
    assert r.per_item == pytest.approx([0.5, 1.0])
    assert r.value == pytest.approx(0.75)


def test_normalized_option_probability_hand_values():
    """Item 0: 0.5 / (0.5 + 0.25 + 0.25) = 0.5. Item 1: 0.2 / (0.2 + 0.3) = 0.4. Mean = 0.45."""
    r = normalized_option_probability([0.5, 0.2], [[0.25, 0.25], [0.3]])
    assert r.per_item == pytest.approx([0.5, 0.4])
    assert r.value == pytest.approx(0.45)


def test_normalized_option_probability_keeps_the_reference_guard():
    """p = c / (c + sum wrong + 1e-10): all-zero options give 0, not an error; tiny values feel the guard."""
    assert normalized_option_probability([0.0], [[0.0, 0.0]]).per_item == [0.0]
    assert normalized_option_probability([1e-10], [[0.0]]).per_item == pytest.approx([0.5])


def test_input_errors():
    with pytest.raises(UserInputError, match="count"):
        answer_probability([-1.0], [0])
    with pytest.raises(UserInputError, match="sum_logp"):
        answer_probability([1.0], [2])  # a positive value is an NLL passed by mistake
    with pytest.raises(UserInputError, match="lengths 2 and 1"):
        answer_probability([-1.0, -2.0], [1])
    with pytest.raises(UserInputError, match="sum_logp"):
        answer_probability([], [])
    with pytest.raises(UserInputError, match="correct_prob"):
        normalized_option_probability([1.5], [[0.1]])
    with pytest.raises(UserInputError, match=r"perturbed_probs\[0\]"):
        normalized_option_probability([0.5], [[]])
