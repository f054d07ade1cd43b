"""Tests for grin_unlearn.metrics.rouge."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import rouge_l_recall, rouge_scores
from grin_unlearn.metrics.rouge import lcs_length


def test_exact_match_is_one():
    r = rouge_l_recall(["Jaime Vasquez was born in Santiago."], ["Jaime Vasquez was born in Santiago."])
    assert r.name == "rouge_l_recall"
    assert r.per_item == [1.0]
    assert r.value == 1.0


def test_known_partial():
    """Reference "the cat sat on the mat" has 6 tokens; prediction "the cat sat on a mat".

    LCS = "the cat sat on mat" = 5 tokens, so recall = 5/6. A second item with no shared token
    scores 0, so the mean is (5/6 + 0) / 2 = 5/12.
    """
    r = rouge_l_recall(["the cat sat on a mat", "dogs bark"], ["The cat sat on the mat", "hello world"])
    assert r.per_item == pytest.approx([5 / 6, 0.0])
    assert r.value == pytest.approx(5 / 12)


def test_recall_ignores_extra_prediction_tokens_and_uses_stemmer():
    """Recall divides by the reference length only; Porter stems "cats"->"cat", "running"->"run"."""
    r = rouge_l_recall(["well, the cats are running fast today"], ["cat run"])
    assert r.per_item == [1.0]


def test_rouge_scores_by_hand():
    """Reference "the cat sat on the mat" (6 tokens), prediction "the cat sat on a mat" (6 tokens):
    unigram overlap {the, cat, sat, on, mat} = 5 -> rouge1 recall 5/6; LCS 5 -> rougeL recall 5/6,
    precision 5/6, F1 5/6."""
    (score,) = rouge_scores(["the cat sat on a mat"], ["The cat sat on the mat"])
    assert score == pytest.approx({"rouge1_recall": 5 / 6, "rougeL_f1": 5 / 6, "rougeL_recall": 5 / 6})
    (other,) = rouge_scores(["mat the"], ["the mat sat"])
    # unigrams {the, mat} -> 2/3; LCS of (the mat sat) and (mat the) is 1 -> recall 1/3, precision 1/2.
    assert other == pytest.approx({"rouge1_recall": 2 / 3, "rougeL_f1": 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2),
                                   "rougeL_recall": 1 / 3})


def test_input_errors():
    with pytest.raises(UserInputError, match="predictions"):
        rouge_l_recall([], [])
    with pytest.raises(UserInputError, match="lengths 2 and 1"):
        rouge_l_recall(["a", "b"], ["a"])
    with pytest.raises(UserInputError, match="references"):
        rouge_l_recall(["a"], [None])


WORDS = ["the", "cat", "cats", "running", "runs", "ran", "born", "in", "Santiago", "1984", "novel", "novels",
         "writing", "wrote", "a", "mat", "on", "sat", "é", "--", "Hsiao", "Yun-Hwa", "award", "awarded"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=40), st.lists(st.sampled_from(WORDS), max_size=80),
       st.sampled_from([" ", ", ", ". ", "\n"]))
def test_rouge_scores_equal_rouge_score_package(reference, prediction, separator):
    """Bit-parallel LCS and memoised stems give exactly ``RougeScorer``'s floats (the reference's scorer)."""
    from rouge_score import rouge_scorer

    ref_text, pred_text = separator.join(reference), separator.join(prediction)
    expected = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True).score(ref_text, pred_text)
    (score,) = rouge_scores([pred_text], [ref_text])
    assert score == {"rouge1_recall": float(expected["rouge1"].recall),
                     "rougeL_f1": float(expected["rougeL"].fmeasure),
                     "rougeL_recall": float(expected["rougeL"].recall)}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=30), st.lists(st.integers(0, 5), max_size=30))
def test_lcs_length_equals_dynamic_programming(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(table[i - 1][j], table[i][j - 1])
    assert lcs_length([str(x) for x in a], [str(x) for x in b]) == table[-1][-1]
