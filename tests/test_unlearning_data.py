"""Paired forget/retain sampling: the whole retain set is used, deterministically and resumably."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from grin_unlearn.config import NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig
from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.unlearning import PairedSampler, UnlearningCollator, UnlearningDataset
from grin_unlearn.errors import UserInputError
from grin_unlearn.models import build_tiny_model
from grin_unlearn.pipeline import unlearn
from tests.conftest import MICRO_MODEL


def _epochs(sampler: PairedSampler, epochs: int) -> list[list[tuple[int, int]]]:
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


@pytest.mark.parametrize(("forget", "retain"), [(5, 23), (12, 24), (7, 3), (4, 4)])
def test_every_retain_example_is_used_within_ceil_r_over_f_epochs(forget, retain):
    draws = [r for epoch in _epochs(PairedSampler(forget, retain, seed=3), math.ceil(retain / forget))
             for _, r in epoch]
    assert set(draws) == set(range(retain))
    # Without replacement: each block of R consecutive draws (one cycle) is a permutation of the set.
    for start in range(0, len(draws) - retain + 1, retain):
        assert sorted(draws[start:start + retain]) == list(range(retain))


def test_each_epoch_visits_every_forget_example_once_in_a_new_order():
    epochs = _epochs(PairedSampler(9, 40, seed=0), 3)
    orders = [[f for f, _ in epoch] for epoch in epochs]
    assert all(sorted(order) == list(range(9)) for order in orders)
    assert orders[0] != orders[1] or orders[1] != orders[2]


def test_the_retain_stream_continues_across_epochs_instead_of_repeating():
    """The old pairing reused the same F retain examples every epoch; now epoch 2 draws new ones."""
    first, second = _epochs(PairedSampler(5, 100, seed=0), 2)
    assert not {r for _, r in first} & {r for _, r in second}


def test_pairs_are_a_pure_function_of_seed_and_epoch():
    a, b = PairedSampler(6, 20, seed=1), PairedSampler(6, 20, seed=1)
    b.set_epoch(2)
    list(b)  # consuming other epochs first changes nothing
    assert _epochs(a, 4) == _epochs(b, 4)
    assert _epochs(PairedSampler(6, 20, seed=2), 4) != _epochs(a, 4)


def test_without_a_retain_set_the_pairs_have_no_retain_index():
    sampler = PairedSampler(3, 0)
    assert sorted(sampler) == [(0, None), (1, None), (2, None)]


def test_dataset_items_and_batches_carry_the_drawn_retain_example(micro_world, micro_tokenizer):
    forget, retain = micro_world["forget10"][:4], micro_world["retain90"][:6]
    dataset = UnlearningDataset(micro_tokenizer, forget, retain, PromptFormat(max_length=48), seed=0)
    sampler = dataset.sampler()
    assert (len(sampler), sampler.retain_size) == (4, 6)
    pairs = list(sampler)
    batch = UnlearningCollator(micro_tokenizer.pad_token_id)([dataset[p] for p in pairs])
    assert batch["index"].tolist() == [f for f, _ in pairs]
    assert batch["retain_index"].tolist() == [r for _, r in pairs]
    first_retain = dataset.retain[pairs[0][1]]["input_ids"]
    assert batch["retain"]["input_ids"][0, :len(first_retain)].tolist() == first_retain
    assert "retain" not in dataset[0]  # the reference pass indexes forget examples alone


class _Stop(Exception):
    pass


def _record_draws(monkeypatch, stop_at: int | None = None) -> list:
    """Patch the trainer to log ``(step, forget indices, retain indices)`` and optionally stop at a step."""
    trainer_cls = sys.modules["grin_unlearn.training.trainer"].UnlearningTrainer
    real, seen = trainer_cls.compute_loss, []

    def compute_loss(self, model, inputs, *args, **kwargs):
        step = self.state.global_step  # optimizer steps already taken
        if stop_at is not None and step == stop_at:
            raise _Stop  # after checkpoint-<stop_at> was written, like a kill
        seen.append((step, inputs["index"].tolist(), inputs["retain_index"].tolist()))
        return real(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(trainer_cls, "compute_loss", compute_loss)
    return seen


def _config(**train) -> UnlearnConfig:
    train = {"epochs": 3, "lr": 1e-3, "batch_size": 4, "warmup_ratio": 0.0, "max_length": 48, **train}
    return UnlearnConfig("graddiff", SelectionConfig(scorer="none"), NoiseConfig(noise_var=0.0), TrainConfig(**train))


def test_training_draws_the_whole_retain_set(micro_world, micro_tokenizer, tmp_path, monkeypatch):
    forget, retain = micro_world["forget10"][:8], micro_world["retain90"][:20]
    seen = _record_draws(monkeypatch)
    unlearn(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0), micro_tokenizer, forget, retain,
            _config(epochs=math.ceil(20 / 8)), tmp_path / "run", log=lambda *_: None)
    drawn = [r for _, _, retain_ids in seen for r in retain_ids]
    assert len(drawn) == 3 * 8 and set(drawn) == set(range(20))


def test_a_resumed_run_draws_the_same_pairs_as_an_uninterrupted_one(micro_world, micro_tokenizer, tmp_path,
                                                                    monkeypatch):
    """Stop after step 7 of 2 epochs × 4 steps; resume from checkpoint-6 (mid second epoch): same pairs."""
    forget, retain = micro_world["forget10"][:8], micro_world["retain90"][:11]
    config = _config(epochs=2, batch_size=2, save_steps=3)  # 4 steps per epoch; checkpoints 3 and 6
    straight = _record_draws(monkeypatch)
    unlearn(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0), micro_tokenizer, forget, retain, config,
            tmp_path / "straight", log=lambda *_: None)
    assert [step for step, _, _ in straight] == list(range(8))

    monkeypatch.undo()
    _record_draws(monkeypatch, stop_at=7)
    with pytest.raises(_Stop):
        unlearn(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0), micro_tokenizer, forget, retain, config,
                tmp_path / "killed", log=lambda *_: None)
    assert (tmp_path / "killed" / "checkpoints" / "checkpoint-6").is_dir()
    monkeypatch.undo()
    resumed = _record_draws(monkeypatch)
    unlearn(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0), micro_tokenizer, forget, retain, config,
            tmp_path / "killed", resume=True, log=lambda *_: None)
    assert resumed == straight[6:]
    # The first 11 draws are one cycle over the 11 retain examples; draws 12..15, all after the
    # checkpoint, start the next cycle, so the resumed run also continued the retain stream's cycles.
    flat = [r for _, _, ids in straight for r in ids]
    assert sorted(flat[:11]) == list(range(11)) and len(flat) == 16


def test_resume_refuses_checkpoints_made_with_another_config(micro_world, micro_tokenizer, tmp_path, monkeypatch):
    forget, retain = micro_world["forget10"][:8], micro_world["retain90"][:12]
    _record_draws(monkeypatch, stop_at=3)
    with pytest.raises(_Stop):
        unlearn(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0), micro_tokenizer, forget, retain,
                _config(save_steps=2), tmp_path / "run", log=lambda *_: None)
    monkeypatch.undo()
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    model = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
    with pytest.raises(UserInputError, match=r"--resume: .*different setup \(config\.train\.lr: checkpoint 0\.001, "
                                             r"this command 0\.002\)"):
        unlearn(model, micro_tokenizer, forget, retain, _config(save_steps=2, lr=2e-3), tmp_path / "run",
                resume=True, log=lambda *_: None)
    with pytest.raises(UserInputError, match=r"different setup \(data\.retain: checkpoint '[0-9a-f]+'"):
        unlearn(model, micro_tokenizer, forget, retain[:11], _config(save_steps=2), tmp_path / "run",
                resume=True, log=lambda *_: None)
    # Nothing was written or removed by the refused commands, and the model was not touched.
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before
    fresh = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
