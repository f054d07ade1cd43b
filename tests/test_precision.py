"""--precision bf16: autocast over fp32 weights; accumulators and master weights stay fp32."""

from __future__ import annotations

import pytest
import torch

from grin_unlearn.config import NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig
from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.errors import UserInputError
from grin_unlearn.pipeline import unlearn
from grin_unlearn.precision import autocast
from grin_unlearn.scoring.influence import score_influence


def test_bf16_runs_the_matmuls_in_bf16_and_fp32_leaves_them(micro_tokenizer, eval_model):
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        with autocast("bf16"):
            assert eval_model.model.layers[0].mlp.up_proj(eval_model.model.embed_tokens(ids)).dtype == torch.bfloat16
        with autocast("fp32"):
            assert eval_model.model.layers[0].mlp.up_proj(eval_model.model.embed_tokens(ids)).dtype == torch.float32
    with pytest.raises(UserInputError, match="--precision"):
        with autocast("fp16"):
            pass


def test_bf16_scoring_keeps_fp32_accumulators_and_close_scores(micro_world, micro_tokenizer, eval_model):
    forget, retain = micro_world["forget10"][:6], micro_world["retain90"][:6]
    fmt = PromptFormat(style="split")
    full = score_influence(eval_model, micro_tokenizer, forget, retain, "grin", fmt)
    with autocast("bf16"):
        mixed = score_influence(eval_model, micro_tokenizer, forget, retain, "grin", fmt)
    for name, grad in mixed.forget_grads.items():
        assert grad.dtype == torch.float32 and mixed.retain_grads[name].dtype == torch.float32
        # bf16 keeps 8 bits of mantissa: the gradients agree to a few percent of their scale, not exactly
        scale = full.forget_grads[name].abs().max().clamp_min(1e-12)
        assert (grad - full.forget_grads[name]).abs().max() / scale < 0.1
        assert not torch.equal(grad, full.forget_grads[name])


def test_bf16_masked_unlearning_leaves_unselected_weights_bit_identical(micro_world, micro_tokenizer, micro_model,
                                                                        tmp_path):
    before = {n: p.detach().clone() for n, p in micro_model.named_parameters()}
    config = UnlearnConfig("npo", SelectionConfig(scorer="grin", ratio=0.2), NoiseConfig(noise_var=0.0),
                           TrainConfig(epochs=1, lr=1e-2, batch_size=4, warmup_ratio=0.0))
    with autocast("bf16"):
        result = unlearn(micro_model, micro_tokenizer, micro_world["forget10"][:8], micro_world["retain90"][:8],
                         config, tmp_path / "run", log=lambda *a, **k: None)
    params = dict(micro_model.named_parameters())
    moved = 0
    for name, start in before.items():
        assert params[name].dtype == torch.float32
        mask = result.masks.get(name)
        if mask is None:
            assert torch.equal(params[name], start)
        else:
            assert torch.equal(params[name][~mask], start[~mask])
            moved += int((params[name][mask] != start[mask]).sum())
    assert moved > 0


def _check_fresh_casts(layer: torch.nn.Linear, seen: list[float]):
    """A forward hook: the output must equal the product with the layer's weights as they are now."""
    def hook(module, args, output):
        if output.dtype == torch.bfloat16:
            with torch.no_grad():
                now = torch.nn.functional.linear(args[0].to(torch.bfloat16), module.weight.detach().to(torch.bfloat16))
                seen.append(float((output.detach() - now).abs().max()))
    return layer.register_forward_hook(hook)


@pytest.mark.parametrize("outer", ["ours", "torch"])
def test_bf16_training_forwards_use_the_weights_as_updated(micro_world, micro_tokenizer, micro_model, tmp_path, outer):
    """Every training forward multiplies by the current weights, not a bf16 copy cast before an
    optimizer step (autocast's cast cache lives until the outermost block exits), whether the run is
    inside our ``autocast`` or a caller's own ``torch.autocast``."""
    layer = micro_model.model.layers[0].mlp.up_proj
    start = layer.weight.detach().clone()
    seen: list[float] = []
    handle = _check_fresh_casts(layer, seen)
    config = UnlearnConfig("npo", SelectionConfig(scorer="none"), NoiseConfig(noise_var=0.0),
                           TrainConfig(epochs=3, lr=5e-2, batch_size=4, warmup_ratio=0.0))
    block = autocast("bf16") if outer == "ours" else torch.autocast("cpu", dtype=torch.bfloat16)
    with block:
        unlearn(micro_model, micro_tokenizer, micro_world["forget10"][:8], micro_world["retain90"][:8],
                config, tmp_path / "run", log=lambda *a, **k: None)
    handle.remove()
    assert not torch.equal(layer.weight, start)  # the weights did move
    assert len(seen) >= 6 and max(seen) == 0.0  # and every forward saw them as they were then


def test_bf16_relearning_steps_use_the_weights_as_updated(micro_world, micro_tokenizer, micro_model):
    """The relearning attack's steps, inside a caller's own ``torch.autocast`` (whose cast cache lives
    until it exits), multiply by the weights as each step left them."""
    from grin_unlearn.evaluation.attacks import relearn_curve

    layer = micro_model.model.layers[0].mlp.up_proj
    start = layer.weight.detach().clone()
    seen: list[float] = []
    handle = _check_fresh_casts(layer, seen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        relearn_curve(micro_model, micro_tokenizer, micro_world["forget10"][:8], [4], 5e-2, 2, 0, lambda k: {})
    handle.remove()
    assert not torch.equal(layer.weight, start)
    assert len(seen) == 4 and max(seen) == 0.0


def test_bf16_evaluation_casts_each_weight_once_and_forgets_the_casts_on_leaving(micro_tokenizer, micro_model):
    """Inside ``eval_mode`` under bf16 a second forward re-casts no weight (autocast's cache is kept for
    the block); after the block the cache is gone, so an evaluation after a weight update sees the new
    weights (the same logits as a cache-free bf16 forward of the updated model)."""
    from torch.profiler import profile

    from grin_unlearn.evaluation.engine import eval_mode

    ids = torch.tensor([micro_tokenizer("Ana Lee was born in Paris.")["input_ids"]])

    def casts(block) -> int:
        with profile() as prof:
            block()
        return sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")

    with autocast("bf16"):
        with eval_mode(micro_model):
            first = casts(lambda: micro_model(input_ids=ids))
            second = casts(lambda: micro_model(input_ids=ids))
        weights = sum(1 for m in micro_model.modules() if isinstance(m, torch.nn.Linear))
        assert first - second >= weights  # every linear weight was cast in the first forward only
        with torch.no_grad():
            for p in micro_model.parameters():
                p.add_(0.05)
        with eval_mode(micro_model):
            after = micro_model(input_ids=ids).logits.float()
        with torch.no_grad():
            fresh = micro_model(input_ids=ids).logits.float()  # our cache-free autocast
    assert torch.equal(after, fresh)
