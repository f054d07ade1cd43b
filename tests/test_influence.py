"""Tests for grin_unlearn.scoring: gradient accumulation, the scorer registry and score_influence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from grin_unlearn.data.formatting import PadCollator, PromptFormat, encode_records
from grin_unlearn.errors import UserInputError
from grin_unlearn.scoring import (
    DEFAULT_EPS,
    SCORERS,
    ScoringContext,
    accumulate_example_gradients,
    accumulate_gradients,
    get_scorer,
    selected_gradient_stats,
    score_influence,
    subsample,
)
from grin_unlearn.logprobs import IGNORE_INDEX
from grin_unlearn.scoring import eligible_parameters

VOCAB = 40


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("GRIN_UNLEARN_QUIET", "1")


def _llama(seed: int = 0, vocab: int = VOCAB, dtype: torch.dtype = torch.float32):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).to(dtype)


def _examples(n: int, seed: int = 0) -> list[dict]:
    """Random token sequences of 5..12 tokens; the first 3 are the (unscored) prompt."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(5, 13, (1,), generator=gen))
        ids = torch.randint(1, VOCAB, (length,), generator=gen).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * 3 + ids[3:]})
    return out


def _manual_gradients(model, examples, params, batch_size):
    """Reference: per batch, the answer-token mean NLL by F.cross_entropy and torch.autograd.grad, summed."""
    collate = PadCollator(0)
    total = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    model.eval()
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start : start + batch_size])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                               batch["labels"][:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
        grads = torch.autograd.grad(loss, list(params.values()))
        for name, g in zip(params, grads):
            total[name] += g.float()
    return total


def _assert_close(a: dict, b: dict, **tol) -> None:
    assert list(a) == list(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], **tol)


# --- accumulation --------------------------------------------------------------------------------


def test_accumulate_matches_manual_autograd_loop():
    model = _llama()
    params = eligible_parameters(model)
    examples = _examples(7)
    got = accumulate_example_gradients(model, examples, params, PadCollator(0), batch_size=3)
    want = _manual_gradients(model, examples, params, batch_size=3)
    assert all(g.dtype == torch.float32 for g in got.values())
    _assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in got.values())


class _BiasLM(torch.nn.Module):
    """logits[b, t] = w for every position: d(mean NLL)/dw = mean over answer tokens of softmax(w) - onehot."""

    def __init__(self, vocab: int):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Module()])
        self.layers[0].weight = torch.nn.Parameter(torch.zeros(1, vocab))

    def forward(self, input_ids, attention_mask=None, use_cache=None):
        logits = self.layers[0].weight.expand(*input_ids.shape, -1)  # (B, T, V)
        return type("Out", (), {"logits": logits})()


def test_signed_gradients_cancel_before_abs():
    """With w = 0 over 2 classes, an example whose answer is token 0 has gradient (-1/2, +1/2) and one
    whose answer is token 1 has (+1/2, -1/2). Summed signed, G = 0 exactly; abs-then-sum would give 1."""
    model = _BiasLM(vocab=2)
    params = {"layers.0.weight": model.layers[0].weight}
    examples = [{"input_ids": [0, 0], "labels": [IGNORE_INDEX, 0]}, {"input_ids": [0, 1], "labels": [IGNORE_INDEX, 1]}]
    first = accumulate_example_gradients(model, examples[:1], params, PadCollator(0), batch_size=1)
    assert torch.equal(first["layers.0.weight"], torch.tensor([[-0.5, 0.5]]))
    both = accumulate_example_gradients(model, examples, params, PadCollator(0), batch_size=1)
    assert torch.equal(both["layers.0.weight"], torch.zeros(1, 2))


def test_signed_sum_differs_from_sum_of_abs_on_llama():
    model = _llama()
    params = eligible_parameters(model)
    examples = _examples(4, seed=1)
    total = accumulate_example_gradients(model, examples, params, PadCollator(0), batch_size=1)
    abs_sum = {n: torch.zeros_like(g) for n, g in total.items()}
    for example in examples:
        for n, g in accumulate_example_gradients(model, [example], params, PadCollator(0), batch_size=1).items():
            abs_sum[n] += g.abs()
    for n in total:
        assert torch.all(total[n].abs() <= abs_sum[n] * (1 + 1e-5) + 1e-8)
        assert (total[n].abs() < 0.5 * abs_sum[n]).any()  # some entries cancel substantially


def test_bf16_model_gets_fp32_accumulators():
    model = _llama(dtype=torch.bfloat16)
    params = eligible_parameters(model)
    examples = _examples(6, seed=2)
    got = accumulate_example_gradients(model, examples, params, PadCollator(0), batch_size=2)
    want = _manual_gradients(model, examples, params, batch_size=2)  # bf16 grads summed in fp32
    assert all(g.dtype == torch.float32 for g in got.values())
    _assert_close(got, want, rtol=1e-6, atol=1e-9)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_model_state_restored():
    model = _llama()
    model.train()
    model.model.embed_tokens.weight.requires_grad_(False)
    params = eligible_parameters(model)
    first = next(iter(params.values()))
    sentinel = torch.full_like(first, 7.0)
    first.grad = sentinel
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    accumulate_example_gradients(model, _examples(3), params, PadCollator(0), batch_size=2)
    assert model.training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert first.grad is sentinel
    assert all(p.grad is None for p in list(params.values())[1:])
    assert model.lm_head.weight.grad is None  # not eligible: never computed


def test_accumulate_gradients_from_records(tiny_world):
    tokenizer, splits = tiny_world
    model = _llama(vocab=len(tokenizer))
    params = eligible_parameters(model)
    fmt = PromptFormat(max_length=48)
    got = accumulate_gradients(model, tokenizer, splits["forget10"], fmt, params, batch_size=4)
    examples = encode_records(tokenizer, splits["forget10"], fmt)
    want = _manual_gradients(model, examples, params, batch_size=4)
    _assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_retain_squares_sum_each_batch_gradient_squared(tiny_world):
    """S = Σ_b (∇L_b)²: the sum over the batches of each batch's own gradient squared (each batch's gradient
    taken alone, by a pass over that batch only), not the square of the sum G."""
    tokenizer, splits = tiny_world
    model = _llama(vocab=len(tokenizer))
    params = eligible_parameters(model)
    fmt = PromptFormat(max_length=48)
    records = subsample(splits["retain90"], 12, seed=2)
    result = score_influence(model, tokenizer, splits["forget10"][:4], records, fmt=fmt, batch_size=4, seed=0,
                             retain_squares=True)
    want = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    for start in range(0, len(records), 4):  # 3 batches of 4
        alone = accumulate_gradients(model, tokenizer, records[start : start + 4], fmt, params, batch_size=4)
        for name, grad in alone.items():
            want[name] += grad * grad
    _assert_close(result.retain_squares, want, rtol=1e-5, atol=1e-12)
    squared_sum = {n: g * g for n, g in result.retain_grads.items()}
    assert any(not torch.allclose(result.retain_squares[n], squared_sum[n]) for n in want)
    assert score_influence(model, tokenizer, splits["forget10"][:4], records, fmt=fmt).retain_squares is None


def test_empty_set_and_bad_batch_size_rejected():
    model = _llama()
    params = eligible_parameters(model)
    with pytest.raises(UserInputError, match="forget set"):
        accumulate_example_gradients(model, [], params, PadCollator(0), desc="forget set")
    with pytest.raises(UserInputError, match="batch_size"):
        accumulate_example_gradients(model, _examples(2), params, PadCollator(0), batch_size=0)


# --- subsampling ---------------------------------------------------------------------------------


def test_subsample_deterministic_and_respected():
    items = list(range(50))
    a = subsample(items, 10, seed=3)
    assert a == subsample(items, 10, seed=3)
    assert len(a) == 10 and a == sorted(a) and len(set(a)) == 10
    assert a != subsample(items, 10, seed=4)
    assert subsample(items, 50, seed=0) == items and subsample(items, 80, seed=0) == items
    assert subsample(items, None, seed=0) == items
    for bad in (0, -1, 2.5, True):
        with pytest.raises(UserInputError, match="retain_samples"):
            subsample(items, bad, seed=0)


def test_max_samples_uses_exactly_the_subsample():
    model = _llama()
    params = eligible_parameters(model)
    examples = _examples(9, seed=5)
    got = accumulate_example_gradients(model, examples, params, PadCollator(0), batch_size=2, max_samples=4, seed=7)
    want = accumulate_example_gradients(model, subsample(examples, 4, seed=7), params, PadCollator(0), batch_size=2)
    _assert_close(got, want, rtol=0, atol=0)


# --- scorers -------------------------------------------------------------------------------------


def _ctx(**kw) -> ScoringContext:
    params = {"a": torch.tensor([[1.0, -2.0, 0.5]]), "b": torch.tensor([0.0, 3.0])}
    gf = {"a": torch.tensor([[3.0, -4.0, 2.0]]), "b": torch.tensor([-1e-3, 0.0])}
    gr = {"a": torch.tensor([[2e-6, 1e-6, 0.0]]), "b": torch.tensor([-1e-3, 5.0])}
    return ScoringContext(params, gf, gr, **kw)


def test_grin_formula():
    """s = |G_f| / (|G_r| + eps): a = [3/(2e-6+eps), 4/(1e-6+eps), 2/eps], b = [1e-3/(1e-3+eps), 0]."""
    eps = 1e-8
    scores = get_scorer("grin")(_ctx(eps=eps))
    torch.testing.assert_close(scores["a"], torch.tensor([[3 / (2e-6 + eps), 4 / (1e-6 + eps), 2 / eps]]))
    torch.testing.assert_close(scores["b"], torch.tensor([1e-3 / (1e-3 + eps), 0.0]))


def test_wagle_formula():
    """s = |(theta - G_r/mu) * G_f| with mu = 1e-6: theta - G_r/mu = [-1, -3, 0.5] -> |.*[3, -4, 2]| = [3, 12, 1];
    for b: [0 + 1e3, 3 - 5e6] * [-1e-3, 0] -> [1, 0]."""
    scores = get_scorer("wagle")(_ctx(wagle_mu=1e-6))
    torch.testing.assert_close(scores["a"], torch.tensor([[3.0, 12.0, 1.0]]))
    torch.testing.assert_close(scores["b"], torch.tensor([1.0, 0.0]))


def test_forget_grad_and_magnitude():
    ctx = _ctx()
    torch.testing.assert_close(get_scorer("forget-grad")(ctx)["a"], torch.tensor([[3.0, 4.0, 2.0]]))
    torch.testing.assert_close(get_scorer("magnitude")(ctx)["a"], torch.tensor([[1.0, 2.0, 0.5]]))


def test_random_scorer_deterministic_with_seed():
    first = get_scorer("random")(_ctx(seed=11))
    again = get_scorer("random")(_ctx(seed=11))
    other = get_scorer("random")(_ctx(seed=12))
    _assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first["a"], other["a"])
    assert all(((s >= 0) & (s < 1)).all() and s.dtype == torch.float32 for s in first.values())


def test_scorer_specs_declare_their_passes():
    assert {n: (s.needs_forget, s.needs_retain) for n, s in SCORERS.items()} == {
        "grin": (True, True), "forget-grad": (True, False), "magnitude": (False, False),
        "random": (False, False), "wagle": (True, True)}
    with pytest.raises(RuntimeError, match="needs_retain"):
        get_scorer("grin")(ScoringContext({}, forget_grads={}))


def test_unknown_scorer_lists_valid_names():
    with pytest.raises(UserInputError) as err:
        get_scorer("bogus")
    for name in ("grin", "forget-grad", "magnitude", "random", "wagle"):
        assert name in str(err.value)
    with pytest.raises(UserInputError, match="unknown name 'none'"):
        score_influence(None, None, [], [], scorer="none")


# --- score_influence -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_world():
    from grin_unlearn.data.world import generate_world, world_corpus
    from grin_unlearn.models import train_tokenizer

    splits = generate_world(authors=10, holdout_authors=1, seed=0, questions_per_author=12)
    return train_tokenizer(world_corpus(splits), 300), splits


def test_score_influence_grin_matches_hand_computation(tiny_world):
    tokenizer, splits = tiny_world
    model = _llama(vocab=len(tokenizer))
    fmt = PromptFormat(max_length=48)
    result = score_influence(model, tokenizer, splits["forget10"], splits["retain90"], fmt=fmt,
                             retain_samples=20, batch_size=4, seed=1)
    params = eligible_parameters(model)
    gf = accumulate_gradients(model, tokenizer, splits["forget10"], fmt, params, batch_size=4)
    gr = accumulate_gradients(model, tokenizer, subsample(splits["retain90"], 20, seed=1), fmt, params, batch_size=4)
    _assert_close(result.forget_grads, gf, rtol=0, atol=0)
    _assert_close(result.retain_grads, gr, rtol=0, atol=0)
    want = {n: gf[n].abs() / (gr[n].abs() + DEFAULT_EPS) for n in gf}
    _assert_close(result.scores, want, rtol=1e-6, atol=0)
    assert result.scorer == "grin" and set(result.timing) == {"forget", "retain", "score"}
    assert result.examples == {"forget": len(splits["forget10"]), "retain": 20}


def test_score_influence_runs_only_needed_passes(tiny_world):
    tokenizer, splits = tiny_world
    model = _llama(vocab=len(tokenizer))
    result = score_influence(model, tokenizer, splits["forget10"][:4], splits["retain90"], scorer="forget-grad",
                             fmt=PromptFormat(max_length=48))
    assert result.retain_grads is None and "retain" not in result.timing
    _assert_close(result.scores, {n: g.abs() for n, g in result.forget_grads.items()})
    result = score_influence(model, tokenizer, [], [], scorer="magnitude")  # no pass, so no data needed
    assert result.forget_grads is None and set(result.timing) == {"score"}
    params = eligible_parameters(model)
    _assert_close(result.scores, {n: p.detach().abs() for n, p in params.items()})


@pytest.mark.parametrize("name,value", [("eps", 0.0), ("eps", float("nan")), ("wagle_mu", -1.0)])
def test_bad_hyperparameters_rejected(name, value):
    with pytest.raises(UserInputError, match=name):
        score_influence(_llama(), None, [], [], **{name: value})


def test_bad_retain_samples_rejected_before_any_pass():
    with pytest.raises(UserInputError, match="retain_samples"):
        score_influence(_llama(), None, [], [], retain_samples=0)  # tokenizer None: no pass may have run


def test_selected_gradient_stats_hand_values():
    """Selected entries 3, −4 (tensor a) and 12 (tensor b); c has no mask and is ignored.

    l2 = sqrt(9 + 16 + 144) = 13, mean |g| = (3 + 4 + 12) / 3 = 19/3, max |g| = 12.
    """
    grads = {"a": torch.tensor([[3.0, 100.0], [-4.0, 0.5]]), "b": torch.tensor([12.0, -50.0]),
             "c": torch.tensor([1000.0])}
    masks = {"a": torch.tensor([[True, False], [True, False]]), "b": torch.tensor([True, False])}
    assert selected_gradient_stats(grads, masks) == pytest.approx({"l2": 13.0, "mean_abs": 19 / 3, "max_abs": 12.0,
                                                                   "weights": 3})
    empty = {"a": torch.zeros(2, 2, dtype=torch.bool)}
    assert selected_gradient_stats(grads, empty) == {"l2": 0.0, "mean_abs": 0.0, "max_abs": 0.0, "weights": 0}
