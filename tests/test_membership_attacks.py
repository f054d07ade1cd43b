"""Min-K%++, GradNorm and the reference-model attack: each per-item value against a hand computation
on a micro model, and their AUCs in the evaluation's aggregates."""

from __future__ import annotations

import math

import pytest
import torch

from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.errors import UserInputError
from grin_unlearn.evaluation import EvalConfig, aggregate, evaluate
from grin_unlearn.evaluation.engine import score_examples
from grin_unlearn.evaluation.gradient_norms import gradient_norms
from grin_unlearn.metrics import mia_auc
from grin_unlearn.metrics.gradnorm import gradnorm_score
from grin_unlearn.metrics.min_k_plus_plus import min_k_plus_plus_score
from grin_unlearn.metrics.reference_attack import reference_score

FMT = PromptFormat(style="split")


def _encoded(tokenizer, records):
    return FMT.encode_many(tokenizer, [(r["question"], r["answer"]) for r in records])


def _answer_logits(model, example):
    """Float64 log-softmax rows predicting each labelled token of one example, and those tokens."""
    ids = torch.tensor([example["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].double()
    labels = torch.tensor(example["labels"][1:])
    rows = (labels != -100).nonzero().squeeze(1)
    return torch.log_softmax(logits[rows], dim=-1), labels[rows]


def test_min_k_plus_plus_equals_a_hand_computation(micro_world, micro_tokenizer, eval_model):
    examples = _encoded(micro_tokenizer, micro_world["forget10"][:5])
    scores = score_examples(eval_model, examples, micro_tokenizer.pad_token_id or 0, batch_size=3,
                            with_moments={0, 2, 3, 4})
    assert scores[1].vocab_mean is None  # only the examples asked for pay for the moments
    got = min_k_plus_plus_score([s.token_logps for s in scores if s.vocab_mean],
                                [s.vocab_mean for s in scores if s.vocab_mean],
                                [s.vocab_var for s in scores if s.vocab_mean], k=0.4).per_item
    want = []
    for example in (examples[i] for i in (0, 2, 3, 4)):
        logp, tokens = _answer_logits(eval_model, example)
        logp, tokens = logp[:-1], tokens[:-1]  # the last labelled token (EOS) is not scored
        prob = logp.exp()
        mu = (prob * logp).sum(-1)
        sigma = ((prob * logp ** 2).sum(-1) - mu ** 2).clamp_min(1e-6).sqrt()
        z = sorted(((logp.gather(1, tokens[:, None]).squeeze(1) - mu) / sigma).tolist())
        lowest = z[:max(1, int(0.4 * len(z)))]
        want.append(-sum(lowest) / len(lowest))
    assert got == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_min_k_plus_plus_formula_on_numbers():
    # tokens' (log p, μ, σ²): z = (-1 - -2)/1 = 1, (-3 - -1)/2 = -1, (-2 - -2)/0.5 = 0; EOS dropped
    result = min_k_plus_plus_score([[-1.0, -3.0, -2.0, -0.1]], [[-2.0, -1.0, -2.0, 0.0]], [[1.0, 4.0, 0.25, 1.0]], k=0.7)
    assert result.per_item == [pytest.approx(-(-1.0 + 0.0) / 2)]  # the two lowest of {1, -1, 0}
    assert min_k_plus_plus_score([[-1.0]], [[-1.0]], [[0.0]]).per_item == [0.0]  # EOS only: nothing left
    with pytest.raises(UserInputError, match="μ and σ²"):
        min_k_plus_plus_score([[-1.0, -2.0]], [[-1.0]], [[1.0]])


def test_gradnorm_equals_the_backward_of_each_item_and_leaves_grads_alone(micro_world, micro_tokenizer, micro_model):
    model = micro_model.eval()
    examples = _encoded(micro_tokenizer, micro_world["forget10"][:3])
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)  # a training step's gradients must survive the attack
    norms = gradient_norms(model, examples, p=2.0)
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in model.parameters())
    want = []
    for example in examples:  # what the reference does: zero_grad, backward, mean of p.grad's norms
        model.zero_grad(set_to_none=True)
        ids, labels = torch.tensor([example["input_ids"]]), torch.tensor(example["labels"][1:])
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
        rows = (labels != -100).nonzero().squeeze(1)[:-1]
        (-logp[rows, labels[rows]].mean()).backward()
        want.append(sum(p.grad.norm().item() for p in model.parameters() if p.grad is not None)
                    / sum(p.grad is not None for p in model.parameters()))
    assert gradnorm_score(norms).per_item == pytest.approx(want, rel=1e-5)


def test_reference_attack_scores_the_loss_against_the_reference_models():
    assert reference_score([2.0, 1.5], [1.0, 2.0]).per_item == [1.0, -0.5]
    with pytest.raises(UserInputError, match="lengths"):
        reference_score([2.0], [1.0, 2.0])


def test_new_attacks_reach_the_aggregates(micro_world, micro_tokenizer, eval_model, micro_model):
    records = {"forget10": micro_world["forget10"][:6], "holdout": micro_world["holdout"][:6]}
    roles = {"forget10": "forget", "holdout": "holdout"}
    config = EvalConfig(max_new_tokens=4, generation=False, mia_gradnorm=True)
    result = evaluate(eval_model, micro_tokenizer, records, roles, FMT, config)
    other = evaluate(micro_model.eval(), micro_tokenizer, records, roles, FMT, config)  # another "oracle"
    sets, aggregates = result["sets"], result["aggregates"]
    for attack in ("min_k_plus_plus", "gradnorm"):
        want = mia_auc(sets["forget10"]["per_item"][f"mia_{attack}"], sets["holdout"]["per_item"][f"mia_{attack}"])
        assert aggregates[f"mia_auc_{attack}"] == pytest.approx(want.value)
    assert aggregates["mia_auc_reference"] is None  # no oracle
    # Against itself every reference score is 0: all pairs tie, AUC 0.5.
    assert aggregate(sets, oracle=result)["mia_auc_reference"] == pytest.approx(0.5)
    loss = {name: sets[name]["per_item"]["mia_loss"] for name in sets}
    reference = {name: other["sets"][name]["per_item"]["mia_loss"] for name in sets}
    want = mia_auc([a - b for a, b in zip(loss["forget10"], reference["forget10"])],
                   [a - b for a, b in zip(loss["holdout"], reference["holdout"])]).value
    assert aggregate(sets, oracle=other)["mia_auc_reference"] == pytest.approx(want)
    assert not math.isnan(want)
    # GradNorm stays off unless asked: no backward pass, no score.
    plain = evaluate(eval_model, micro_tokenizer, records, roles, FMT, EvalConfig(max_new_tokens=4, generation=False))
    assert "mia_gradnorm" not in plain["sets"]["forget10"]["per_item"] and plain["aggregates"]["mia_auc_gradnorm"] is None
