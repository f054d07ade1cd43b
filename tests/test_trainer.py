"""Masked unlearning: unselected weights stay bit-identical, selected ones move, frozen tensors hold no state."""

from __future__ import annotations

import sys

import pytest
import torch

from grin_unlearn.config import NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig
from grin_unlearn.pipeline import unlearn


def _config(objective="npo", scorer="grin", ratio=0.2, noise=0.0, **train):
    train = {"epochs": 2, "lr": 1e-2, "batch_size": 4, "weight_decay": 0.1, "warmup_ratio": 0.0, **train}
    return UnlearnConfig(objective=objective, selection=SelectionConfig(scorer=scorer, ratio=ratio),
                         noise=NoiseConfig(noise_var=noise), train=TrainConfig(**train))


def test_masked_run_moves_only_selected_weights(micro_world, micro_tokenizer, micro_model, tmp_path):
    before = {n: p.detach().clone() for n, p in micro_model.named_parameters()}
    result = unlearn(micro_model, micro_tokenizer, micro_world["forget10"], micro_world["retain90"][:24],
                     _config(), tmp_path / "run", log=lambda *_: None)
    after = dict(micro_model.named_parameters())
    moved_selected = 0
    for name, start in before.items():
        mask = result.masks.get(name)
        if mask is None:
            assert torch.equal(after[name], start), f"{name} is not eligible but changed"
            continue
        assert torch.equal(after[name][~mask], start[~mask]), f"unselected entries of {name} moved"
        moved_selected += int((after[name][mask] != start[mask]).sum())
    assert moved_selected > 0.5 * sum(int(m.sum()) for m in result.masks.values())
    assert (tmp_path / "run" / "run.json").is_file() and (tmp_path / "run" / "mask.safetensors").is_file()


def test_noise_then_training_keeps_unselected_identical(micro_world, micro_tokenizer, micro_model, tmp_path):
    before = {n: p.detach().clone() for n, p in micro_model.named_parameters()}
    result = unlearn(micro_model, micro_tokenizer, micro_world["forget10"], micro_world["retain90"][:24],
                     _config(objective="po", scorer="random", ratio=0.3, noise=1e-3), tmp_path / "run",
                     log=lambda *_: None)
    for name, mask in result.masks.items():
        assert torch.equal(dict(micro_model.named_parameters())[name][~mask], before[name][~mask])


@pytest.mark.parametrize("objective", ["ga", "graddiff", "npo", "simnpo", "po", "idkdpo"])
def test_every_objective_runs_full_finetuning(objective, micro_world, micro_tokenizer, micro_model, tmp_path):
    before = micro_model.model.layers[0].mlp.down_proj.weight.detach().clone()
    unlearn(micro_model, micro_tokenizer, micro_world["forget10"][:8], micro_world["retain90"][:8],
            _config(objective=objective, scorer="none", epochs=1), tmp_path / "run", log=lambda *_: None)
    assert not torch.equal(micro_model.model.layers[0].mlp.down_proj.weight, before)


def test_cpu_accumulators_reach_scoring_and_give_the_same_mask(micro_world, micro_tokenizer, tmp_path, monkeypatch):
    """``--accumulator-device cpu`` is handed to the scorer and only moves G_f/G_r: same selected weights."""
    pipeline = sys.modules["grin_unlearn.pipeline"]  # the package binds the name `unlearn` to the function
    from grin_unlearn.models import build_tiny_model
    from tests.conftest import MICRO_MODEL

    seen = []
    real = pipeline.score_influence
    monkeypatch.setattr(pipeline, "score_influence",
                        lambda *a, **k: seen.append(k["accumulator_device"]) or real(*a, **k))
    masks = []
    for device, name in ((None, "default"), ("cpu", "offload")):
        config = _config(epochs=1)
        config.selection.accumulator_device = device
        model = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
        result = unlearn(model, micro_tokenizer, micro_world["forget10"][:8], micro_world["retain90"][:8], config,
                         tmp_path / name, log=lambda *_: None)
        masks.append(result.masks)
    assert seen == [None, "cpu"]
    assert masks[0].keys() == masks[1].keys()
    assert all(torch.equal(masks[0][k], masks[1][k]) for k in masks[0])


def test_masked_run_records_the_forget_gradient_before_and_after_the_noise(micro_world, micro_tokenizer, tmp_path):
    """``noise.json``: "before" is the scoring pass's G_f on the selected weights; the noise changes it."""
    import json

    from grin_unlearn.models import build_tiny_model
    from grin_unlearn.scoring import score_influence, selected_gradient_stats
    from grin_unlearn.data.formatting import PromptFormat
    from tests.conftest import MICRO_MODEL

    forget, retain = micro_world["forget10"][:8], micro_world["retain90"][:8]
    config = _config(noise=1e-2, epochs=1)
    config.selection.score_batch_size = 4
    config.noise.noise_probe = True
    result = unlearn(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0), micro_tokenizer, forget, retain, config,
                     tmp_path / "run", log=lambda *_: None)
    record = json.loads((tmp_path / "run" / "noise.json").read_text())
    grads = score_influence(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0), micro_tokenizer, forget, retain,
                            fmt=PromptFormat(max_length=config.train.max_length), batch_size=4).forget_grads
    expected = selected_gradient_stats(grads, result.masks)
    before, after = record["forget_gradient"]["before_noise"], record["forget_gradient"]["after_noise"]
    assert before["weights"] == sum(int(m.sum()) for m in result.masks.values()) == expected["weights"]
    assert before["l2"] == pytest.approx(expected["l2"], rel=1e-5)
    assert after["weights"] == before["weights"] and after["l2"] != pytest.approx(before["l2"], rel=1e-4)
    assert record["forget_gradient"]["l2_ratio"] == pytest.approx(after["l2"] / before["l2"])
    assert record["noise"]["variance"] == 1e-2 and record["noise"]["perturbed"] == before["weights"]
    # Reports read it back: the demo report states both norms and their ratio.
    from grin_unlearn.experiments.demo import noise_lines
    from grin_unlearn.run_dir import noise_record

    text = "\n".join(noise_lines(noise_record(tmp_path / "run")))
    assert f"{before['l2']:.4g} before the noise, {after['l2']:.4g} after (× {after['l2'] / before['l2']:.3g})" in text


def test_noise_probe_off_costs_no_pass_and_changes_no_weight(micro_world, micro_tokenizer, tmp_path):
    """Without ``noise_probe`` a masked run makes no forget-gradient pass beyond scoring (2 × 2 forward
    passes fewer over 8 forget examples in batches of 4) and trains bit-identical weights."""
    import json

    from grin_unlearn.models import build_tiny_model
    from tests.conftest import MICRO_MODEL

    forget, retain = micro_world["forget10"][:8], micro_world["retain90"][:8]
    weights, calls = {}, {}
    for probe in (True, False):
        config = _config(noise=1e-2, epochs=1)
        config.selection.score_batch_size = 4
        config.noise.noise_probe = probe
        model = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
        calls[probe] = []
        handle = model.register_forward_hook(lambda *_: calls[probe].append(1))
        unlearn(model, micro_tokenizer, forget, retain, config, tmp_path / str(probe), log=lambda *_: None)
        handle.remove()
        weights[probe] = {k: v.clone() for k, v in model.state_dict().items()}
    assert len(calls[True]) - len(calls[False]) == 2 * 2
    assert all(torch.equal(weights[True][k], weights[False][k]) for k in weights[True])
    record = json.loads((tmp_path / "False" / "noise.json").read_text())
    assert "forget_gradient" not in record and record["noise"]["variance"] == 1e-2


def test_full_finetuning_writes_no_noise_record(micro_world, micro_tokenizer, micro_model, tmp_path):
    unlearn(micro_model, micro_tokenizer, micro_world["forget10"][:4], micro_world["retain90"][:4],
            _config(scorer="none", epochs=1), tmp_path / "run", log=lambda *_: None)
    assert (tmp_path / "run" / "run.json").is_file() and not (tmp_path / "run" / "noise.json").exists()


def test_per_step_log_dicts_reach_the_console_only_when_verbose(micro_world, micro_tokenizer, micro_model, tmp_path,
                                                                 capsys):
    """The Trainer's log dicts ('loss', 'learning_rate', ...) go to train_log.json; the console shows them
    only at INFO level (``grin-unlearn -v``)."""
    import json
    import logging

    forget, retain = micro_world["forget10"][:4], micro_world["retain90"][:4]
    logger = logging.getLogger("grin_unlearn")
    shown = {}
    for verbose in (False, True):
        previous = logger.level
        logger.setLevel(logging.INFO if verbose else logging.WARNING)
        try:
            unlearn(micro_model, micro_tokenizer, forget, retain, _config(scorer="none", epochs=1),
                    tmp_path / str(verbose), log=lambda *_: None)
        finally:
            logger.setLevel(previous)
        captured = capsys.readouterr()
        shown[verbose] = "'loss'" in captured.out + captured.err
        assert any("loss" in entry for entry in json.loads((tmp_path / str(verbose) / "train_log.json").read_text()))
    assert shown == {False: False, True: True}


@pytest.mark.parametrize("retain_loss", ["nll", "kl"])
def test_logits_from_the_first_labelled_position_give_the_full_logits_loss(micro_world, micro_tokenizer, tmp_path,
                                                                           monkeypatch, retain_loss):
    """The trainer computes the LM head only from the column before the batch's first labelled token
    (``logits_to_keep``); every step's loss equals the loss over every position's logits. (lr ≈ 0, so
    both runs see the same weights at every step: Adam would turn float noise in near-zero gradients
    into visible weight differences.)"""
    from grin_unlearn.models import build_tiny_model
    from grin_unlearn.training import trainer as trainer_module
    from grin_unlearn.training.objectives import ObjectiveHyperparams

    from tests.conftest import MICRO_MODEL

    real_offset, real_loss = trainer_module.logits_from_first_answer, trainer_module.UnlearningTrainer.compute_loss
    offsets, losses = [], {True: [], False: []}
    for cut in (True, False):
        monkeypatch.setattr(trainer_module, "logits_from_first_answer",
                            lambda *a: offsets.append(real_offset(*a)[0]) or real_offset(*a) if cut else (0, {}))
        monkeypatch.setattr(trainer_module.UnlearningTrainer, "compute_loss",
                            lambda self, *a, **k: losses[cut].append(real_loss(self, *a, **k)) or losses[cut][-1])
        config = _config(scorer="none", epochs=2, lr=1e-12, weight_decay=0.0)
        config = UnlearnConfig(objective="npo", selection=config.selection, noise=config.noise, train=config.train,
                               hyperparams=ObjectiveHyperparams(retain_loss=retain_loss))
        unlearn(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0), micro_tokenizer, micro_world["forget10"][:8],
                micro_world["retain90"][:8], config, tmp_path / f"run_{cut}", log=lambda *_: None)
    assert offsets and min(offsets) > 3  # the prompt's columns were really cut
    assert len(losses[True]) == len(losses[False]) == 4
    assert [float(x) for x in losses[True]] == pytest.approx([float(x) for x in losses[False]], rel=1e-5)
