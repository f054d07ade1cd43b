"""Tests for grin_unlearn.metrics.extraction (reference semantics: the last labelled token, EOS, is not scored)."""

import pytest
import torch

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import exact_memorization, extraction_strength

EOS = 0


def test_hand_cases_with_eos_left_out():
    """Labels y = [1, 2, 3, 4, EOS]; scored: [1, 2, 3, 4] (n = 4), k* = start of the matching suffix.

    all correct, EOS wrong   [1,2,3,4,9] -> k* = 0 -> ES = 1 (the reference's 1, not 0)
    first wrong              [9,2,3,4,·] -> k* = 1 -> ES = 0.75
    second wrong             [1,9,3,4,·] -> k* = 2 -> ES = 0.5
    last scored token wrong  [1,2,3,9,·] -> no suffix matches -> k* = n - 1 = 3 -> ES = 0.25
    """
    y = [1, 2, 3, 4, EOS]
    preds = [[1, 2, 3, 4, 9], [9, 2, 3, 4, EOS], [1, 9, 3, 4, EOS], [1, 2, 3, 9, EOS]]
    r = extraction_strength(preds, [y] * 4)
    assert r.name == "extraction_strength"
    assert r.per_item == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert r.value == pytest.approx(2.5 / 4)
    # Scoring EOS too: the first item's suffix only matches when empty -> k* = n - 1 = 4 -> 0.2.
    assert extraction_strength(preds[:1], [y], exclude_last=False).per_item == pytest.approx([0.2])


def test_matches_the_reference_loop():
    """A direct transcription of the reference's loop over random cases."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        n = int(torch.randint(1, 8, (1,), generator=gen))
        y = torch.randint(0, 3, (n,), generator=gen).tolist()
        p = torch.randint(0, 3, (n,), generator=gen).tolist()
        labels, preds = torch.tensor(y[:-1]), torch.tensor(p[:-1])
        valid = len(labels)
        k = 0
        for k in range(valid):
            if torch.equal(preds[k:], labels[k:]):
                break
        expected = 0 if valid == 0 else 1 - k / valid
        assert extraction_strength([p], [y]).per_item[0] == pytest.approx(expected)


def test_exact_memorization():
    """Scored [1, 2, 3, 4] against [1, 9, 3, 4]: 3/4; a one-token answer (EOS only) has nothing to score."""
    r = exact_memorization([[1, 9, 3, 4, 7], [5]], [[1, 2, 3, 4, EOS], [EOS]])
    assert r.per_item == [0.75, None]
    assert r.value == 0.75


def test_single_token_answer_scores_zero():
    assert extraction_strength([[5]], [[EOS]]).per_item == [0.0]


def test_input_errors():
    with pytest.raises(UserInputError, match="lengths 2 and 1"):
        extraction_strength([[1, 2]], [[1]])
    with pytest.raises(UserInputError, match="lengths 2 and 1"):
        extraction_strength([[1], [2]], [[1]])
    with pytest.raises(UserInputError, match="token id"):
        extraction_strength([[1.5]], [[1]])
