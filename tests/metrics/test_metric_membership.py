"""Tests for grin_unlearn.metrics.membership."""

import zlib

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import loss_score, mia_auc, min_k_percent_score, privleak, zlib_score


def test_loss_score():
    """Item 0: -(-1 - 3)/2 = 2. Item 1: -(-0.5)/1 = 0.5. Mean = 1.25."""
    r = loss_score([[-1.0, -3.0], [-0.5]])
    assert r.name == "mia_loss"
    assert r.per_item == pytest.approx([2.0, 0.5])
    assert r.value == pytest.approx(1.25)


def test_zlib_score():
    """Mean NLL 2 divided by the zlib-compressed byte length of each text."""
    texts = ["aaaaaaaaaaaaaaaaaaaaaaaa", "The quick brown fox jumps over the lazy dog"]
    r = zlib_score([[-1.0, -3.0], [-2.0, -2.0]], texts)
    expected = [2.0 / len(zlib.compress(t.encode("utf-8"))) for t in texts]
    assert r.per_item == pytest.approx(expected)
    # The repetitive text compresses better, so the same NLL gives it the larger score.
    assert r.per_item[0] > r.per_item[1]


def test_min_k_percent_score():
    """logps [-1, -2, -3, -4, -5]: k = 0.4 -> floor(2) lowest = {-5, -4} -> 4.5;
    k = 0.1 -> floor(0.5) = 0 -> at least 1 token = {-5} -> 5; k = 1 -> mean NLL = 3.
    """
    logps = [[-1.0, -2.0, -3.0, -4.0, -5.0]]
    assert min_k_percent_score(logps, k=0.4, exclude_last=False).per_item == pytest.approx([4.5])
    assert min_k_percent_score(logps, k=0.1, exclude_last=False).per_item == pytest.approx([5.0])
    assert min_k_percent_score(logps, k=1.0, exclude_last=False).per_item == pytest.approx([3.0])


def test_min_k_leaves_out_the_last_token_as_the_reference():
    """Labelled tokens [-1, -2, -3, -4, EOS = -9]: the reference scores [-1, -2, -3, -4] (n = 4),
    k = 0.4 -> int(1.6) = 1 lowest = {-4} -> 4 (with EOS it would be int(2) = {-9, -4} -> 6.5);
    a one-token answer leaves nothing and scores 0. Default k is the TOFU config's 0.4."""
    logps = [[-1.0, -2.0, -3.0, -4.0, -9.0], [-2.0]]
    assert min_k_percent_score(logps).per_item == pytest.approx([4.0, 0.0])
    assert min_k_percent_score(logps[:1], exclude_last=False).per_item == pytest.approx([6.5])


def test_auc_equals_sklearn_style_roc_auc():
    """The reference's AUC: roc_auc_score(labels = forget 0 / holdout 1, scores); computed by hand
    as the fraction of (holdout, forget) pairs ranked holdout-higher, ties half."""
    members, nonmembers = [0.3, 1.2, 0.8, 2.0], [1.0, 2.0, 0.5]
    pairs = [(h > f) + 0.5 * (h == f) for h in nonmembers for f in members]
    assert mia_auc(members, nonmembers).value == pytest.approx(sum(pairs) / len(pairs))


def test_auc_perfect_identical_reversed_and_ties():
    """Higher score = non-member. Pairs (nonmember, member) for members [1, 2], nonmembers [2, 3]:
    (2,1) win, (2,2) tie = 0.5, (3,1) win, (3,2) win -> 3.5 / 4 = 0.875.
    """
    assert mia_auc([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).value == 1.0
    assert mia_auc([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).value == 0.5
    assert mia_auc([4.0, 5.0, 6.0], [1.0, 2.0, 3.0]).value == 0.0
    assert mia_auc([1.0, 2.0], [2.0, 3.0]).value == pytest.approx(0.875)
    assert mia_auc([1.0], [2.0]).per_item == []


def test_privleak_in_muse_orientation():
    """MUSE AUC = 1 - mia_auc. Oracle at chance (0.5):
    model 0.5 -> 0; model 1.0 (perfect attack) -> (0 - 0.5)/0.5*100 = -100;
    model 0.4 -> (0.6 - 0.5)/0.5*100 = +20 (over-unlearning).
    """
    assert privleak(0.5, 0.5).value == pytest.approx(0.0)
    assert privleak(1.0, 0.5).value == pytest.approx(-100.0)
    assert privleak(0.4, 0.5).value == pytest.approx(20.0)
    assert privleak(0.4, 0.5).name == "privleak"
    # The reference's 1e-10 guard: an oracle AUC of 1 gives a finite number.
    assert privleak(0.9, 1.0).value == pytest.approx(0.1 / 1e-10 * 100)


def test_input_errors():
    with pytest.raises(UserInputError, match="token_logps"):
        loss_score([])
    with pytest.raises(UserInputError, match=r"token_logps\[0\]"):
        loss_score([[]])
    with pytest.raises(UserInputError, match=r"token_logps`\[0\]\[1\]"):
        loss_score([[-1.0, 2.0]])
    with pytest.raises(UserInputError, match="lengths 1 and 2"):
        zlib_score([[-1.0]], ["a", "b"])
    with pytest.raises(UserInputError, match="`k`"):
        min_k_percent_score([[-1.0]], k=0.0)
    with pytest.raises(UserInputError, match="nonmember_scores"):
        mia_auc([1.0], [])
    with pytest.raises(UserInputError, match="auc_oracle"):
        privleak(0.5, 1.5)
    with pytest.raises(UserInputError, match="auc_model"):
        privleak(1.5, 0.5)
