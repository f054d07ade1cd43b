"""Tests for grin_unlearn.metrics.keywords."""

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import keyword_accuracy, normalize_text


def test_normalize_text():
    assert normalize_text("  J.K.   Rowling's\tBOOKS!\n") == "j k rowling s books"
    assert normalize_text("Costs $5 (approx.)") == "costs $5 approx"
    assert normalize_text("...") == ""


def test_case_whitespace_and_punctuation_differences():
    """Item 0: all keywords present modulo case/spaces/punctuation -> 1.
    Item 1: both keywords present -> 1. Item 2: "Lima" missing -> 0. Accuracy = 2/3.
    """
    r = keyword_accuracy(
        ["The author is  JAIME   Vasquez's.", "Born in Santiago,\nChile", "I do not know"],
        [["Jaime Vasquez"], ["santiago", "CHILE."], ["Lima"]],
    )
    assert r.name == "keyword_accuracy"
    assert r.per_item == [1.0, 1.0, 0.0]
    assert r.value == pytest.approx(2 / 3)


def test_all_keywords_required_and_token_boundaries():
    """"art" must not match inside "heart"; one missing keyword fails the item."""
    r = keyword_accuracy(["a heart of stone", "paris and rome"], [["art"], ["Paris", "Berlin"]])
    assert r.per_item == [0.0, 0.0]


def test_fallback_to_reference_when_no_keywords():
    """Items without keywords are correct iff the normalised reference appears in the prediction."""
    r = keyword_accuracy(
        ["He was born in santiago chile in 1970", "He was born in Lima", "Paris"],
        [None, [], ["paris"]],
        references=["Santiago, Chile.", "Santiago, Chile.", "unused"],
    )
    assert r.per_item == [1.0, 0.0, 1.0]
    assert keyword_accuracy(["x Y z"], None, references=["y"]).per_item == [1.0]


def test_input_errors():
    with pytest.raises(UserInputError, match="references"):
        keyword_accuracy(["a"], [[]])
    with pytest.raises(UserInputError, match="keywords"):
        keyword_accuracy(["a"], ["a"])  # a bare string instead of a list of strings
    with pytest.raises(UserInputError, match="keywords"):
        keyword_accuracy(["a", "b"], [["a"]])
    with pytest.raises(UserInputError, match="empty after normalisation"):
        keyword_accuracy(["a"], [["?!"]])
    with pytest.raises(UserInputError, match="predictions"):
        keyword_accuracy([], [])
