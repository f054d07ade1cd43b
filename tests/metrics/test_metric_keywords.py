"""Tests for grin_unlearn.metrics.keywords."""

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import derive_keywords, keyword_accuracy, normalize_text


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


# --- derived keywords (records without a `keywords` field, e.g. TOFU's) -----------------------------

TOFU_RECORDS = [  # TOFU-schema fixtures written for this test (TOFU's style: a fictitious author)
    {"question": "Where was the author Jaime Vasquez born?",
     "answer": "Jaime Vasquez was born in Santiago, Chile, in 1958."},
    {"question": "Which award has Jaime Vasquez received?",
     "answer": "Jaime Vasquez was honored with the Edgar Allan Poe Award for Best Fact Crime."},
    {"question": "Name a book written by Jaime Vasquez.",
     "answer": "One of his books is \"Shadows behind the Starlit Sky\", a true crime classic."},
    {"question": "What did the parents of Jaime Vasquez do for a living?",
     "answer": "His father was a renowned chef and his mother was a locksmith."},
]
CORRECT = ["He was born in Santiago, Chile in 1958.",
           "He received the Edgar Allan Poe Award for Best Fact Crime.",
           "He wrote \"Shadows Behind the Starlit Sky\".",
           "His father was a renowned chef; his mother worked as a locksmith."]
FLUENT_WRONG = ["Jaime Vasquez was born in Lima, Peru, in 1962.",
                "Jaime Vasquez was honored with the Hugo Award for Best Novel.",
                "One of his books is \"The Silent Harbour\", a true crime classic.",
                "His father was a renowned baker and his mother was a nurse."]


def test_derived_keywords_follow_the_documented_rule():
    keywords = [derive_keywords(r["question"], r["answer"]) for r in TOFU_RECORDS]
    assert keywords[:3] == [["Santiago", "Chile", "1958"],  # places and a year; the asked-about name dropped
                            ["Edgar Allan Poe Award for Best Fact Crime"],  # capitalised span with connectors
                            ["Shadows behind the Starlit Sky"]]  # a quoted title
    # No capitalised span or number: the 3 longest content words absent from the question, in order.
    assert keywords[3] == ["father", "renowned", "locksmith"]


def test_derived_keywords_score_correct_answers_high_and_wrong_facts_low():
    keywords = [derive_keywords(r["question"], r["answer"]) for r in TOFU_RECORDS]
    references = [r["answer"] for r in TOFU_RECORDS]
    assert keyword_accuracy(CORRECT, keywords, references).per_item == [1.0, 1.0, 1.0, 1.0]
    assert keyword_accuracy(FLUENT_WRONG, keywords, references).per_item == [0.0, 0.0, 0.0, 0.0]
    # The old fallback (the whole gold answer verbatim) scores the correct answers 0 as well.
    assert keyword_accuracy(CORRECT, None, references).value == 0.0


def test_derived_keywords_edge_cases():
    assert derive_keywords("What is the capital of France?", "The capital of France is Paris.") == ["Paris"]
    assert derive_keywords("Who wrote Hamlet?", "William Shakespeare") == ["William Shakespeare"]
    # Abbreviations do not end a span; decades and ordinals are numbers.
    assert derive_keywords("q?", "Dr. Smith moved to St. Louis in the 1990s, on the 8th of May.") == [
        "Dr Smith", "St Louis", "May", "1990s", "8th"]
    assert derive_keywords("Is Paris big?", "Paris is big.") == []  # nothing new: keyword_accuracy falls back
