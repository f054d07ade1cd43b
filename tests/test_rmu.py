"""RMU (--objective rmu): its loss at the steered layer equals the formula, it updates only its own
weights (alone and under a scorer's mask), and its defaults follow the WMDP paper's layer choice."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import TrainingArguments

from grin_unlearn.config import NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig
from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.unlearning import UnlearningCollator, UnlearningDataset
from grin_unlearn.errors import UserInputError
from grin_unlearn.pipeline import unlearn
from grin_unlearn.training.activations import (control_vector, scope_parameters, scope_patterns, steered_layer,
                                               steering_setup)
from grin_unlearn.training.objectives import ObjectiveHyperparams, get_objective
from grin_unlearn.training.trainer import UnlearningTrainer

FMT = PromptFormat(style="split", max_length=64)


class _Layers:
    def __init__(self, layers: int):
        self.config = type("Config", (), {"num_hidden_layers": layers})()


@pytest.mark.parametrize("layers, steered", [(32, 7), (30, 7), (24, 5), (4, 1), (2, 0)])
def test_default_layer_sits_at_the_wmdp_papers_relative_depth(layers, steered):
    assert steered_layer(_Layers(layers), None) == steered


def test_default_scope_is_the_down_projections_of_three_layers(micro_model):
    # The micro model has 2 layers: steered layer 0, so only layers.0 (no layer below it).
    assert list(scope_parameters(micro_model, scope_patterns(micro_model, None, None))) == \
        ["model.layers.0.mlp.down_proj.weight"]
    assert list(scope_parameters(micro_model, scope_patterns(micro_model, 1, None))) == \
        ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    with pytest.raises(UserInputError, match="--rmu-layer"):
        steered_layer(micro_model, 2)
    with pytest.raises(UserInputError, match="--rmu-params"):
        scope_parameters(micro_model, [r"model\.layers\.0\.mlp\.down"])  # a full match is needed


def test_control_vector_is_seeded_and_has_the_steering_scale():
    vector = control_vector(32, 6.5, seed=3)
    assert torch.equal(vector, control_vector(32, 6.5, seed=3)) and not torch.equal(vector, control_vector(32, 6.5, 4))
    assert float(vector.norm()) == pytest.approx(6.5) and bool((vector >= 0).all())


def test_rmu_loss_equals_the_formula_at_the_steered_layer(micro_world, micro_tokenizer, micro_model, tmp_path):
    model = micro_model.train()
    frozen = copy.deepcopy(model).eval()
    with torch.no_grad():  # the reference must differ from the model for the retain term to be non-zero
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.01)
    spec = get_objective("rmu")
    hp = ObjectiveHyperparams(alpha=0.7, gamma=1.3, steering_coeff=4.0, rmu_layer=0).resolve(spec)
    needed = spec.required_inputs(hp)
    assert set(needed) == {"forget", "forget_hidden", "control", "retain_hidden", "ref_retain_hidden"}
    trainer = UnlearningTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[]),
                                objective=spec, hyperparams=hp, ref_model=frozen, pad_id=0,
                                **steering_setup(model, frozen, hp, needed, seed=5))
    dataset = UnlearningDataset(micro_tokenizer, micro_world["forget10"][:3], micro_world["retain90"][:3], FMT)
    batch = UnlearningCollator(0)([dataset[(i, i)] for i in range(3)])
    loss = trainer.compute_loss(model, batch)

    def layer_output(net, group):  # hidden_states[1] is layer 0's output
        inputs = batch[group]
        with torch.no_grad():
            states = net(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                         output_hidden_states=True).hidden_states[1]
        return states.double(), (inputs["labels"] != -100).double()

    def per_example(states, target, mask):
        return (((states - target) ** 2).mean(-1) * mask).sum(-1) / mask.sum(-1)

    control = control_vector(32, 4.0, seed=5).double()
    forget, forget_mask = layer_output(model, "forget")
    retain, retain_mask = layer_output(model, "retain")
    reference, _ = layer_output(frozen, "retain")
    want = 1.3 * per_example(forget, control, forget_mask).mean() + 0.7 * per_example(retain, reference, retain_mask).mean()
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-5)
    assert float(per_example(retain, reference, retain_mask).mean()) > 0


def _rmu_config(scorer: str) -> UnlearnConfig:
    return UnlearnConfig(objective="rmu", selection=SelectionConfig(scorer=scorer, ratio=0.3),
                         noise=NoiseConfig(noise_var=0.0),
                         train=TrainConfig(epochs=2, lr=1e-2, batch_size=4, warmup_ratio=0.0, weight_decay=0.0))


@pytest.mark.parametrize("scorer", ["none", "grin"])
def test_rmu_moves_only_its_own_weights(scorer, micro_world, micro_tokenizer, micro_model, tmp_path):
    before = {n: p.detach().clone() for n, p in micro_model.named_parameters()}
    result = unlearn(micro_model, micro_tokenizer, micro_world["forget10"][:8], micro_world["retain90"][:8],
                     _rmu_config(scorer), tmp_path / "run", fmt=FMT, log=lambda *_: None)
    scope = "model.layers.0.mlp.down_proj.weight"
    assert list(result.masks) == [scope]  # a scorer selects within RMU's weights, never outside them
    after = dict(micro_model.named_parameters())
    for name, start in before.items():
        if name != scope:
            assert torch.equal(after[name], start), f"{name} is outside RMU's layers but changed"
    mask = result.masks[scope]
    assert torch.equal(after[scope][~mask], before[scope][~mask])
    assert int((after[scope][mask] != before[scope][mask]).sum()) > 0.5 * int(mask.sum())
    assert bool(mask.all()) == (scorer == "none") and result.train_loss is not None


def test_rmu_without_a_scorer_adds_no_noise(micro_world, micro_tokenizer, micro_model, tmp_path):
    """Scorer none trains all of RMU's weights as a full fine-tune trains all weights: no noise, recorded so."""
    import json

    config = UnlearnConfig(objective="rmu", selection=SelectionConfig(scorer="none"), noise=NoiseConfig(noise_var=1e-2),
                           train=TrainConfig(epochs=1, lr=1e-12, batch_size=4, warmup_ratio=0.0, weight_decay=0.0))
    before = micro_model.model.layers[0].mlp.down_proj.weight.detach().clone()
    unlearn(micro_model, micro_tokenizer, micro_world["forget10"][:4], micro_world["retain90"][:4], config,
            tmp_path / "run", fmt=FMT, log=lambda *_: None)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert saved["noise"]["noise_var"] == 0.0
    # lr 1e-12: one step moves each weight by about 1e-12, far below the noise's σ = 0.1
    assert (micro_model.model.layers[0].mlp.down_proj.weight - before).abs().max() < 1e-6
