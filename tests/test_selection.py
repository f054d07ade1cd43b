"""Tests for grin_unlearn.selection.top_fraction: eligible parameters and the exact global top-p selection."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grin_unlearn.selection import top_fraction as selection
from grin_unlearn.errors import UserInputError
from grin_unlearn.scoring import eligible_parameters
from grin_unlearn.selection.top_fraction import mask_fraction, select_top_fraction
from grin_unlearn.selection.reference import brute_force_top_fraction


def _random_scores(seed: int, integer: bool = False) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"a": (17, 13), "b": (64,), "c": (5, 7, 3), "d": (1,), "e": (40, 9)}
    if integer:  # values in 0..4: almost every score ties with many others
        return {n: torch.randint(0, 5, s, generator=gen).float() for n, s in shapes.items()}
    return {n: torch.rand(s, generator=gen) for n, s in shapes.items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == torch.bool and a[name].shape == b[name].shape
        assert torch.equal(a[name], b[name]), name


def _count(masks: dict[str, torch.Tensor]) -> int:
    return sum(int(m.sum()) for m in masks.values())


@pytest.mark.parametrize("ratio", [1e-4, 0.001, 0.01, 0.05, 0.1, 0.2, 1 / 3, 0.4, 0.5, 0.77, 0.999, 1.0])
def test_exact_count_and_matches_brute_force(ratio):
    for integer in (False, True):
        scores = _random_scores(seed=1, integer=integer)
        n = sum(s.numel() for s in scores.values())
        masks = select_top_fraction(scores, ratio)
        assert _count(masks) == round(ratio * n)
        _assert_same(masks, brute_force_top_fraction(scores, ratio))


@pytest.mark.parametrize("chunk", [5, 64])
def test_chunk_boundaries_do_not_change_the_result(monkeypatch, chunk):
    """Ties split across streamed chunks must still be taken in tensor order, then flat order."""
    scores = _random_scores(seed=2, integer=True)
    expected = brute_force_top_fraction(scores, 0.37)
    monkeypatch.setattr(selection, "_CHUNK", chunk)
    _assert_same(select_top_fraction(scores, 0.37), expected)


def test_torch_code_path_matches(monkeypatch):
    """CPU chunks are processed as numpy views; CUDA chunks as torch tensors. Force the torch path."""
    monkeypatch.setattr(selection, "_host_view", lambda tensor: tensor)
    monkeypatch.setattr(selection, "_CHUNK", 50)
    scores = _random_scores(seed=7, integer=True)
    scores["c"] = scores["c"] - 2.0  # negative scores take the signed-key path
    scores["d"] = torch.tensor([-0.0])
    for ratio in (0.05, 0.3, 0.5, 0.9):
        _assert_same(select_top_fraction(scores, ratio), brute_force_top_fraction(scores, ratio))
    scores["b"][3] = float("nan")
    with pytest.raises(UserInputError, match="'b'.*NaN"):
        select_top_fraction(scores, 0.5)


def test_tie_break_earlier_tensor_then_lower_index():
    scores = {"x": torch.tensor([1.0, 2.0, 2.0]), "y": torch.tensor([[2.0, 2.0], [3.0, 0.0]])}
    masks = select_top_fraction(scores, 3 / 7)  # k = 3: the 3.0, then the first two 2.0s (both in x)
    assert masks["x"].tolist() == [False, True, True]
    assert masks["y"].tolist() == [[False, False], [True, False]]


def test_signed_zero_and_negative_scores_and_dtypes():
    scores = {
        "neg": torch.tensor([-0.0, -1.0, -3.5, 0.0, -1e-40, 1e-40]),
        "half": torch.tensor([0.5, -0.5, 0.0], dtype=torch.float16),
        "bf16": torch.tensor([[0.25, -0.0], [2.0, -2.0]], dtype=torch.bfloat16),
        "inf": torch.tensor([float("inf"), -float("inf")]),
    }
    for ratio in (0.1, 0.3, 0.5, 0.6, 0.8, 1.0):
        _assert_same(select_top_fraction(scores, ratio), brute_force_top_fraction(scores, ratio))


def test_brute_force_matches_python_sort():
    scores = _random_scores(seed=3, integer=True)
    flat = [(float(v), t, i) for t, s in enumerate(scores.values()) for i, v in enumerate(s.reshape(-1).tolist())]
    k = round(0.3 * len(flat))
    chosen = {(t, i) for _, t, i in sorted(flat, key=lambda e: (-e[0], e[1], e[2]))[:k]}
    masks = brute_force_top_fraction(scores, 0.3)
    got = {(t, i) for t, m in enumerate(masks.values()) for i, v in enumerate(m.reshape(-1).tolist()) if v}
    assert got == chosen


def test_ratio_one_selects_all_and_tiny_ratio_none():
    scores = _random_scores(seed=4)
    assert all(bool(m.all()) for m in select_top_fraction(scores, 1.0).values())
    assert _count(select_top_fraction(scores, 1e-9)) == 0


@pytest.mark.parametrize("ratio", [0, 0.0, -0.1, 1.0001, 2, float("nan"), float("inf"), True, "0.5", None])
def test_bad_ratio_raises(ratio):
    with pytest.raises(UserInputError, match="ratio"):
        select_top_fraction(_random_scores(seed=5), ratio)


def test_nan_names_the_tensor():
    scores = _random_scores(seed=6)
    scores["c"][1, 2, 0] = float("nan")
    with pytest.raises(UserInputError, match="'c'.*NaN"):
        select_top_fraction(scores, 0.5)
    with pytest.raises(UserInputError, match="'c'.*NaN"):
        brute_force_top_fraction(scores, 0.5)


@pytest.mark.parametrize("pattern", [0x7FC00000, 0x7F800001, 0x7FFFFFFF, -0x00400000, -0x007FFFFF, -0x00000001])
def test_every_nan_bit_pattern_is_caught(pattern):
    """Quiet/signalling NaN of either sign; 0x7F800001 and 0xFF800001 share a histogram bin with +-inf."""
    scores = {"ok": torch.tensor([1.0, float("inf"), -float("inf")]), "bad": torch.zeros(4)}
    scores["bad"].view(torch.int32)[2] = pattern
    assert torch.isnan(scores["bad"]).any()
    with pytest.raises(UserInputError, match="'bad'.*NaN"):
        select_top_fraction(scores, 0.5)


def test_bad_scores_raise():
    with pytest.raises(UserInputError, match="scores"):
        select_top_fraction({}, 0.5)
    with pytest.raises(UserInputError, match="'i'.*floating"):
        select_top_fraction({"i": torch.arange(4)}, 0.5)


def test_mask_fraction():
    masks = {"a": torch.tensor([True, False, True, False]), "b": torch.zeros(2, 2, dtype=torch.bool)}
    assert mask_fraction(masks) == pytest.approx(2 / 8)
    with pytest.raises(UserInputError):
        mask_fraction({})


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.lists(st.floats(allow_nan=False, width=32), min_size=0, max_size=40),
        min_size=1,
        max_size=4,
    ).filter(lambda ts: sum(map(len, ts)) > 0),
    ratio=st.floats(min_value=1e-6, max_value=1.0),
)
def test_property_exact_count_and_order(values, ratio):
    scores = {f"t{i}": torch.tensor(v, dtype=torch.float32) for i, v in enumerate(values)}
    n = sum(map(len, values))
    masks = select_top_fraction(scores, ratio)
    assert _count(masks) == round(ratio * n)
    selected = torch.cat([scores[k][masks[k]] for k in scores])
    unselected = torch.cat([scores[k][~masks[k]] for k in scores])
    if selected.numel() and unselected.numel():
        assert selected.min() >= unselected.max()
    _assert_same(masks, brute_force_top_fraction(scores, ratio))


# --- eligible_parameters on a tiny Llama ----------------------------------------------------------

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tiny_llama():
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


def test_default_picks_the_seven_projections_per_layer(tiny_llama):
    names = list(eligible_parameters(tiny_llama))
    expected = [
        n for n, _ in tiny_llama.named_parameters() if any(f".{p}.weight" in n for p in PROJECTIONS)
    ]  # named_parameters order
    assert names == expected
    assert len(names) == 2 * 7
    for layer in (0, 1):
        assert sum(f"layers.{layer}." in n for n in names) == 7
    assert not any("embed" in n or "lm_head" in n or "norm" in n for n in names)


def test_include_adds_and_exclude_removes(tiny_llama):
    names = list(eligible_parameters(tiny_llama, include=["embed_tokens", "lm_head"]))
    assert "model.embed_tokens.weight" in names and "lm_head.weight" in names and len(names) == 16
    order = [n for n, _ in tiny_llama.named_parameters()]
    assert names == [n for n in order if n in names]

    names = list(eligible_parameters(tiny_llama, include=[r"layers\.\d+\.input_layernorm"]))
    assert sum("input_layernorm" in n for n in names) == 2 and len(names) == 16

    names = list(eligible_parameters(tiny_llama, exclude=[r"self_attn\."]))
    assert len(names) == 6 and all("mlp" in n for n in names)
    names = list(eligible_parameters(tiny_llama, include=["lm_head"], exclude=["lm_head", r"layers\.1\."]))
    assert len(names) == 7 and all("layers.0." in n for n in names)


def test_eligible_bad_inputs(tiny_llama):
    with pytest.raises(UserInputError, match="include"):
        eligible_parameters(tiny_llama, include=["no_such_module"])
    with pytest.raises(UserInputError, match="exclude"):
        eligible_parameters(tiny_llama, exclude=["("])
    with pytest.raises(UserInputError, match="no eligible parameter"):
        eligible_parameters(tiny_llama, exclude=["."])
    with pytest.raises(UserInputError, match="no eligible parameter"):
        eligible_parameters(torch.nn.Linear(3, 3))


def test_eligible_gpt2_style_names():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = torch.nn.LayerNorm(4)
            self.c_attn = torch.nn.Linear(4, 12)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = torch.nn.Embedding(10, 4)
            self.h = torch.nn.ModuleList([Block(), Block()])

    names = list(eligible_parameters(Net()))
    assert names == ["h.0.c_attn.weight", "h.1.c_attn.weight"]
