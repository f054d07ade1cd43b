"""Fine-tuning and model loading: determinism, answer-only loss, clear errors."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from grin_unlearn.data.formatting import PromptFormat, encode_example
from grin_unlearn.errors import UserInputError
from grin_unlearn.training.finetune import FinetuneConfig, finetune
from grin_unlearn.logprobs import IGNORE_INDEX
from grin_unlearn.models import build_tiny_model, load_model, load_tokenizer
from tests.conftest import MICRO_MODEL


def _train(tokenizer, records, out):
    model = build_tiny_model(MICRO_MODEL, tokenizer, seed=0)
    finetune(model, tokenizer, records, FinetuneConfig(epochs=1, batch_size=8, seed=0), out)
    return AutoModelForCausalLM.from_pretrained(out).state_dict()


def test_same_seed_gives_identical_weights(micro_world, micro_tokenizer, tmp_path):
    records = micro_world["full"][:24]
    first = _train(micro_tokenizer, records, tmp_path / "a")
    second = _train(micro_tokenizer, records, tmp_path / "b")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    start = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0).state_dict()
    assert not torch.equal(first["model.layers.0.mlp.up_proj.weight"], start["model.layers.0.mlp.up_proj.weight"])
    assert (tmp_path / "a" / "finetune.json").is_file() and (tmp_path / "a" / "tokenizer_config.json").is_file()


def test_prompt_tokens_are_masked_and_answer_ends_with_eos(micro_tokenizer):
    example = encode_example(micro_tokenizer, "Where was X born?", "X was born in Y.", PromptFormat(style="split"))
    labels = example["labels"]
    prompt_len = labels.count(IGNORE_INDEX)
    assert prompt_len > 0 and all(label == IGNORE_INDEX for label in labels[:prompt_len])
    assert labels[prompt_len:] == example["input_ids"][prompt_len:]
    assert labels[-1] == micro_tokenizer.eos_token_id
    assert micro_tokenizer.decode(example["input_ids"][prompt_len:-1]) == " X was born in Y."


def test_truncation_keeps_answer_tokens(micro_tokenizer):
    example = encode_example(micro_tokenizer, "word " * 200, "short answer.", PromptFormat(style="split", max_length=32))
    assert len(example["input_ids"]) == 32 and example["truncated"]
    assert any(label != IGNORE_INDEX for label in example["labels"])


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UserInputError, match="not a model folder"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(UserInputError, match="not a model folder"):
        load_tokenizer(str(tmp_path))


def test_tokenizer_without_pad_token_uses_eos(micro_tokenizer, tmp_path):
    micro_tokenizer.save_pretrained(tmp_path)
    config = (tmp_path / "tokenizer_config.json").read_text().replace('"pad_token": "<pad>"', '"pad_token": null')
    (tmp_path / "tokenizer_config.json").write_text(config)
    (tmp_path / "config.json").write_text("{}")
    tokenizer = load_tokenizer(str(tmp_path))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id


def test_finetune_rejects_empty_split(micro_tokenizer, micro_model, tmp_path):
    with pytest.raises(UserInputError, match="empty"):
        finetune(micro_model, micro_tokenizer, [], FinetuneConfig(epochs=1), tmp_path / "m")
