"""Tests for grin_unlearn.metrics.extraction."""

import pytest
import torch

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import extraction_strength


def test_hand_cases():
    """Labels y = [1, 2, 3, 4] (|y| = 4); k* = start of the longest matching suffix.

    all correct             -> k* = 0 -> ES = 1
    first wrong  [9,2,3,4]  -> k* = 1 -> ES = 0.75
    second wrong [1,9,3,4]  -> k* = 2 -> ES = 0.5 (the correct first token does not count)
    last wrong   [1,2,3,9]  -> k* = 4 -> ES = 0
    Mean = (1 + 0.75 + 0.5 + 0) / 4 = 0.5625.
    """
    y = [1, 2, 3, 4]
    r = extraction_strength([[1, 2, 3, 4], [9, 2, 3, 4], [1, 9, 3, 4], [1, 2, 3, 9]], [y, y, y, y])
    assert r.name == "extraction_strength"
    assert r.per_item == pytest.approx([1.0, 0.75, 0.5, 0.0])
    assert r.value == pytest.approx(0.5625)


def test_accepts_tensors():
    r = extraction_strength([torch.tensor([5, 6])], [torch.tensor([7, 6])])
    assert r.per_item == pytest.approx([0.5])


def test_input_errors():
    with pytest.raises(UserInputError, match=r"label_tokens\[0\]"):
        extraction_strength([[1]], [[]])
    with pytest.raises(UserInputError, match="lengths 2 and 1"):
        extraction_strength([[1, 2]], [[1]])
    with pytest.raises(UserInputError, match="lengths 2 and 1"):
        extraction_strength([[1], [2]], [[1]])
    with pytest.raises(UserInputError, match="token id"):
        extraction_strength([[1.5]], [[1]])
