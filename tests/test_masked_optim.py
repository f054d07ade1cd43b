"""MaskedAdamW is torch's AdamW on the selected entries, bit for bit, and never writes the others;
make_masked_optimizer plugs a GRIN mask into a plain transformers.Trainer or a hand-written loop."""

from __future__ import annotations

import pytest
import torch

from grin_unlearn import make_masked_optimizer
from grin_unlearn.errors import UserInputError
from grin_unlearn.training.masked_optim import MaskedAdamW, freeze_unselected, zero_unselected_


def _reference_steps(start: torch.Tensor, mask: torch.Tensor, grads: list[torch.Tensor], **hyper) -> torch.Tensor:
    """torch's fused AdamW run on a parameter that holds only the selected entries (fp32), one step per
    gradient; before each step the entries are re-read from a tensor of ``start``'s dtype, as the
    masked optimizer re-reads the model's weights. Returns that tensor after the last step."""
    weights = start.clone()
    compact = torch.nn.Parameter(weights[mask].float())  # (k,)
    optimizer = torch.optim.AdamW([compact], fused=True, **hyper)
    for grad in grads:
        with torch.no_grad():
            compact.copy_(weights[mask].float())
        compact.grad = grad[mask].float()
        optimizer.step()
        weights[mask] = compact.detach().to(weights.dtype)
    return weights


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("density", [0.3, 1.0])
def test_selected_entries_follow_torch_adamw_bit_for_bit(dtype, density):
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(6, 5, generator=generator).to(dtype)
    mask = torch.rand(6, 5, generator=generator) < density
    grads = [torch.randn(6, 5, generator=generator).to(dtype) for _ in range(4)]
    hyper = dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3)
    expected = _reference_steps(start, mask, grads, **hyper)

    param = torch.nn.Parameter(start.clone())
    optimizer = MaskedAdamW([param], {param: mask}, **hyper)
    for grad in grads:
        param.grad = grad.clone()  # unselected entries of the gradient are not zero: never read
        optimizer.step()
    assert torch.equal(param.detach(), expected)
    assert torch.equal(param.detach()[~mask], start[~mask])
    assert not torch.equal(param.detach()[mask], start[mask])
    state = optimizer.state[param]
    k = int(mask.sum())
    assert state["exp_avg"].shape == (k,) and state["exp_avg"].dtype == torch.float32 and state["step"].item() == 4


def test_state_and_indices_are_proportional_to_the_selected_weights():
    """One tensor with 8 of 16 entries selected, one with none: state is 8 moments each (fp32) plus a
    step, the layout 8 int32 indices; the unselected tensor gets no state. With zero gradient, weight
    decay λ = 0.5 and lr = 0.1 scale the selected entries by 1 − 0.05 = 0.95, the others not at all."""
    trained, idle = torch.nn.Parameter(torch.ones(4, 4)), torch.nn.Parameter(torch.ones(3))
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:2] = True
    optimizer = MaskedAdamW([trained, idle], {trained: mask, idle: torch.zeros(3, dtype=torch.bool)},
                            lr=0.1, weight_decay=0.5)
    trained.grad, idle.grad = torch.zeros(4, 4), torch.zeros(3)
    optimizer.step()
    assert torch.equal(trained[mask], torch.full((8,), 0.95)) and torch.equal(trained[~mask], torch.ones(8))
    assert torch.equal(idle.detach(), torch.ones(3)) and idle not in optimizer.state
    state_bytes = sum(v.numel() * v.element_size() for v in optimizer.state[trained].values())
    assert state_bytes == 2 * 8 * 4 + 4
    assert optimizer.indices[trained].dtype == torch.int32
    assert optimizer.indices[trained].tolist() == list(range(8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_zero_unselected_zeroes_every_unselected_value_including_nan_and_inf(dtype, chunk):
    grad = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, -1.5, 2.0, float("nan"), -0.0]).to(dtype)
    mask = torch.tensor([False, False, False, False, True, False, True, True])
    int_dtype = {2: torch.int16, 4: torch.int32}[grad.element_size()]
    bits = grad.view(int_dtype).clone()
    out = zero_unselected_(grad, mask, chunk=chunk)
    assert out is grad and out.dtype == dtype  # in place
    out_bits = out.view(int_dtype)
    assert torch.equal(out_bits[mask], bits[mask])  # bit for bit, NaN payload and -0.0 included
    assert (out_bits[~mask] == 0).all()  # +0.0


def test_zero_unselected_handles_a_non_contiguous_gradient():
    grad = torch.arange(1.0, 7.0).reshape(2, 3).t()  # (3, 2), strides (1, 3)
    mask = torch.tensor([[True, False], [False, False], [False, True]])
    zero_unselected_(grad, mask, chunk=2)
    assert torch.equal(grad, torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 6.0]]))


def test_load_state_dict_refuses_state_saved_with_another_mask():
    param = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = MaskedAdamW([param], {param: torch.tensor([[True, False], [False, False]])})
    param.grad = torch.ones(2, 2)
    optimizer.step()
    other = MaskedAdamW([param], {param: torch.tensor([[True, True], [False, False]])})
    with pytest.raises(ValueError, match="saved with another mask"):
        other.load_state_dict(optimizer.state_dict())


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    return LlamaForCausalLM(config)


def _grin_style_mask(model, tmp_path, ratio=0.2):
    """A mask as GRIN writes it: top-p of random scores over the block weights, saved and loaded back."""
    from grin_unlearn.masks import load_mask, save_mask
    from grin_unlearn.scoring import eligible_parameters
    from grin_unlearn.selection.top_fraction import select_top_fraction

    generator = torch.Generator().manual_seed(1)
    scores = {n: torch.rand(p.shape, generator=generator) for n, p in eligible_parameters(model).items()}
    save_mask(tmp_path / "mask.safetensors", select_top_fraction(scores, ratio), {"ratio": ratio})
    return load_mask(tmp_path / "mask.safetensors")[0]


def _check_only_selected_moved(model, before, masks):
    moved = 0
    for name, param in model.named_parameters():
        mask = masks.get(name, torch.zeros_like(param, dtype=torch.bool))
        assert torch.equal(param.detach()[~mask], before[name][~mask]), f"unselected weights of {name} moved"
        moved += int((param.detach()[mask] != before[name][mask]).sum())
    assert moved > 0.9 * sum(int(m.sum()) for m in masks.values())


def test_a_plain_transformers_trainer_moves_only_the_selected_weights(tmp_path):
    from transformers import Trainer, TrainingArguments

    model = _tiny_llama()
    masks = _grin_style_mask(model, tmp_path)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(2)
    rows = [{"input_ids": ids, "labels": ids} for ids in torch.randint(0, 64, (8, 12), generator=generator)]
    optimizer = make_masked_optimizer(model, masks, lr=1e-2, weight_decay=0.1)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=2,
                             max_grad_norm=1.0, save_strategy="no", report_to=[], use_cpu=True, logging_steps=1,
                             disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=rows, optimizers=(optimizer, None)).train()
    _check_only_selected_moved(model, before, masks)
    frozen = [n for n, p in model.named_parameters() if n not in masks]
    assert frozen and not any(dict(model.named_parameters())[n].requires_grad for n in frozen)
    assert len(optimizer.state) == len(masks)  # the frozen embeddings, norms and lm_head hold no state


def test_a_hand_written_loop_sees_masked_gradients_and_moves_only_selected_weights(tmp_path):
    model = _tiny_llama()
    masks = _grin_style_mask(model, tmp_path, ratio=0.3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = make_masked_optimizer(model, masks, lr=1e-2, weight_decay=0.1)
    params = dict(model.named_parameters())
    for step in range(3):
        for micro in range(2):  # gradient accumulation: the hook masks .grad after each accumulation
            ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(2 * step + micro))
            model(input_ids=ids, labels=ids).loss.backward()
        for name, mask in masks.items():  # clipping below sees only selected gradients
            assert (params[name].grad[~mask] == 0).all() and (params[name].grad[mask] != 0).any()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        optimizer.step()
        optimizer.zero_grad()
    _check_only_selected_moved(model, before, masks)
    optimizer.remove_gradient_masks()
    name = next(iter(masks))
    model(input_ids=ids, labels=ids).loss.backward()
    assert (params[name].grad[~masks[name]] != 0).any()  # the hooks are gone


def test_freeze_unselected_keeps_exactly_the_tensors_with_a_selected_entry(micro_model):
    params = dict(micro_model.named_parameters())
    masks = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in params.items() if p.ndim == 2}
    chosen = next(iter(masks))
    masks[chosen][0, 0] = True
    assert list(freeze_unselected(params, masks)) == [chosen]
    assert [n for n, p in micro_model.named_parameters() if p.requires_grad] == [chosen]


@pytest.mark.parametrize("case, message", [
    ("empty", "masks: expected at least one mask"),
    ("unknown", "tensors missing from the model: 'no.such.weight'"),
    ("shape", "has shape (2, 2)"),
    ("dtype", "expected a bool tensor, got torch.float32"),
    ("nothing", "they select no weight"),
])
def test_make_masked_optimizer_refuses_bad_masks(case, message):
    model = _tiny_llama()
    name = "model.layers.0.mlp.up_proj.weight"
    param = dict(model.named_parameters())[name]
    masks = {"empty": {}, "unknown": {"no.such.weight": torch.ones(2, dtype=torch.bool)},
             "shape": {name: torch.ones(2, 2, dtype=torch.bool)}, "dtype": {name: torch.ones(param.shape)},
             "nothing": {name: torch.zeros(param.shape, dtype=torch.bool)}}[case]
    with pytest.raises(UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_masked_optimizer(model, masks, lr=1e-3)
