"""Tests for grin_unlearn.metrics.multiple_choice."""

import pytest
import torch

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import multiple_choice_accuracy


def test_argmax_accuracy_by_hand():
    """Argmax per row: [1, 0, 0] (row 2 is a three-way tie -> lowest index 0).
    Answers [1, 1, 0] -> correct [1, 0, 1] -> accuracy 2/3.
    """
    logits = [[1.0, 2.0, 0.0], [3.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    for given in (logits, torch.tensor(logits, dtype=torch.bfloat16)):
        r = multiple_choice_accuracy(given, [1, 1, 0])
        assert r.name == "multiple_choice_accuracy"
        assert r.per_item == [1.0, 0.0, 1.0]
        assert r.value == pytest.approx(2 / 3)


def test_input_errors():
    with pytest.raises(UserInputError, match="shape"):
        multiple_choice_accuracy([1.0, 2.0], [0])
    with pytest.raises(UserInputError, match="lengths 1 and 2"):
        multiple_choice_accuracy([[1.0, 2.0]], [0, 1])
    with pytest.raises(UserInputError, match=r"answers`\[0\]"):
        multiple_choice_accuracy([[1.0, 2.0]], [2])
    with pytest.raises(UserInputError, match="shape"):
        multiple_choice_accuracy(torch.zeros(0, 4), [])
