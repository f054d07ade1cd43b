"""Tests for grin_unlearn.logprobs on hand-built logits with known log-probs."""

import math

import pytest
import torch

from grin_unlearn.logprobs import (
    IGNORE_INDEX,
    SequenceLogProbs,
    answer_kl,
    sequence_logprobs,
    token_logprobs,
)

I = IGNORE_INDEX


def _labels() -> torch.Tensor:
    """(2, 5): example 0 has a 2-token prompt and 3 answer tokens; example 1 has 1 answer token
    followed by padding."""
    return torch.tensor([[I, I, 1, 2, 3], [I, I, I, 4, I]])


def test_uniform_logits_give_log_one_over_v():
    """Uniform logits over V = 5 give log(1/5) for every answer token and 0 elsewhere.

    Shifted labels are labels[:, 1:] = [[I, 1, 2, 3], [I, I, 4, I]], so the mask is
    [[F, T, T, T], [F, F, T, F]].
    """
    logits = torch.zeros(2, 5, 5)
    logp, mask = token_logprobs(logits, _labels())
    expected_mask = torch.tensor([[False, True, True, True], [False, False, True, False]])
    assert torch.equal(mask, expected_mask)
    expected = torch.where(expected_mask, math.log(1 / 5), 0.0)
    torch.testing.assert_close(logp, expected)


def test_shift_position_t_predicts_label_t_plus_one():
    """Logits at position 0 = log [0.75, 0.25] and label at position 1 = 0 -> log 0.75.

    Position 1 is uniform over V = 2 and label at position 2 is 1 -> log 0.5. The logits at the
    last position predict nothing and are set to garbage to show they are unused.
    """
    logits = torch.tensor([[[math.log(0.75), math.log(0.25)], [0.0, 0.0], [1e4, -1e4]]])
    labels = torch.tensor([[I, 0, 1]])
    logp, mask = token_logprobs(logits, labels)
    assert mask.tolist() == [[True, True]]
    torch.testing.assert_close(logp, torch.tensor([[math.log(0.75), math.log(0.5)]]))


def test_ignored_tokens_do_not_contribute_value_or_gradient():
    """Changing logits that predict ignored tokens (and the last position) changes nothing, and
    their gradient is exactly 0."""
    torch.manual_seed(0)
    labels = _labels()
    logits = torch.randn(2, 5, 7, requires_grad=True)
    base = sequence_logprobs(logits, labels)
    base.sum.sum().backward()
    # Positions whose shifted label is ignored, plus the last position of each row.
    unused = torch.ones(2, 5, dtype=torch.bool)
    unused[:, :-1] = labels[:, 1:] == I
    assert torch.all(logits.grad[unused] == 0)
    assert torch.all(logits.grad[~unused].abs().sum(-1) > 0)

    perturbed = logits.detach().clone()
    perturbed[unused] += 100 * torch.randn_like(perturbed[unused])
    again = sequence_logprobs(perturbed, labels)
    torch.testing.assert_close(again.sum, base.sum.detach())


def test_sequence_logprobs_sum_count_mean():
    """Uniform logits over V = 5: example 0 has 3 answer tokens -> sum 3 log(1/5), mean log(1/5);
    example 1 has 1 -> sum = mean = log(1/5)."""
    seq = sequence_logprobs(torch.zeros(2, 5, 5), _labels())
    lp = math.log(1 / 5)
    torch.testing.assert_close(seq.sum, torch.tensor([3 * lp, lp]))
    assert seq.count.tolist() == [3, 1]
    torch.testing.assert_close(seq.mean, torch.tensor([lp, lp]))


def test_mean_of_example_without_answer_is_zero():
    """count = 0 is clamped to 1 so the mean is 0 / 1 = 0, not NaN."""
    seq = sequence_logprobs(torch.zeros(1, 3, 4), torch.full((1, 3), I))
    assert seq.count.tolist() == [0]
    assert seq.mean.tolist() == [0.0]


def test_sequence_logprobs_type():
    assert isinstance(sequence_logprobs(torch.zeros(2, 5, 5), _labels()), SequenceLogProbs)


def test_bf16_logits_scored_in_fp32():
    """bf16 logits give fp32 log-probs equal to scoring the same (rounded) logits in fp32."""
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11).to(torch.bfloat16)
    logp, _ = token_logprobs(logits, _labels())
    assert logp.dtype == torch.float32
    torch.testing.assert_close(logp, token_logprobs(logits.float(), _labels())[0])


def test_token_logprobs_match_log_softmax_gather():
    """Random logits: equal to log_softmax(...).gather(label) at answer positions."""
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 9)
    labels = _labels()
    logp, mask = token_logprobs(logits, labels)
    full = torch.log_softmax(logits[:, :-1], dim=-1)
    safe = labels[:, 1:].clamp(min=0)
    expected = full.gather(-1, safe.unsqueeze(-1)).squeeze(-1) * mask
    torch.testing.assert_close(logp, expected)


def test_shape_errors():
    with pytest.raises(ValueError, match="logits"):
        token_logprobs(torch.zeros(2, 5), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        token_logprobs(torch.zeros(2, 5, 3), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="ref_logits"):
        answer_kl(torch.zeros(2, 5, 3), torch.zeros(2, 5, 4), _labels())


def test_kl_zero_for_identical_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6)
    torch.testing.assert_close(answer_kl(logits, logits.clone(), _labels()), torch.zeros(2))


def test_kl_positive_for_different_logits():
    torch.manual_seed(0)
    kl = answer_kl(torch.randn(2, 5, 6), torch.randn(2, 5, 6), _labels())
    assert kl.shape == (2,)
    assert torch.all(kl > 0)


def test_kl_direction_and_value():
    """p_ref = [1/2, 1/2], p_θ = [3/4, 1/4] at the single answer position:

    KL(p_ref || p_θ) = ½ log(½ / ¾) + ½ log(½ / ¼) = ½ log(4/3) ≈ 0.1438, whereas the reverse
    KL(p_θ || p_ref) = ¾ log(3/2) + ¼ log(1/2) ≈ 0.1308, so the test also pins the direction.
    """
    logits = torch.tensor([[[math.log(0.75), math.log(0.25)], [0.0, 0.0]]])
    ref = torch.zeros(1, 2, 2)
    labels = torch.tensor([[I, 0]])
    expected = torch.tensor([0.5 * math.log(4 / 3)])
    torch.testing.assert_close(answer_kl(logits, ref, labels), expected)


def test_kl_is_mean_over_answer_tokens_and_ignores_prompt():
    """Two answer positions with KL ½ log(4/3) and 0 -> mean ¼ log(4/3); changing the prompt
    position's logits (label ignored) leaves it unchanged."""
    logits = torch.tensor([[[5.0, -5.0], [math.log(0.75), math.log(0.25)], [0.0, 0.0], [0.0, 0.0]]])
    ref = torch.tensor([[[-5.0, 5.0], [0.0, 0.0], [0.0, 0.0], [3.0, 1.0]]])
    labels = torch.tensor([[I, I, 0, 1]])
    expected = torch.tensor([0.25 * math.log(4 / 3)])
    torch.testing.assert_close(answer_kl(logits, ref, labels), expected)


def test_kl_gradient_flows_to_logits_only_on_answer_positions():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, requires_grad=True)
    answer_kl(logits, torch.randn(2, 5, 6), _labels()).sum().backward()
    labels = _labels()
    unused = torch.ones(2, 5, dtype=torch.bool)
    unused[:, :-1] = labels[:, 1:] == I
    assert torch.all(logits.grad[unused] == 0)
    assert torch.all(logits.grad[~unused].abs().sum(-1) > 0)
