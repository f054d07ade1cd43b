"""The README's commands and `make demo` build the same target, and every model folder we write is portable."""

from __future__ import annotations

import dataclasses
import json

import torch
from safetensors.torch import load_file

from grin_unlearn.cli import main
from grin_unlearn.data.world import folder_corpus, generate_world, world_corpus
from grin_unlearn.experiments.embedded import BUILTIN_FINETUNE, EmbeddedConfig, prepare_embedded

import pytest

SMALL = EmbeddedConfig(authors=10, holdout_authors=1, finetune=dataclasses.replace(BUILTIN_FINETUNE, epochs=1))


@pytest.fixture(scope="module")
def small_assets(tmp_path_factory):
    return prepare_embedded(SMALL, cache_dir=tmp_path_factory.mktemp("cache"), log=lambda *_: None)


def test_readme_commands_build_the_demo_target_bit_for_bit(small_assets, tmp_path):
    """`world` + `finetune --model builtin` (README) == prepare_embedded (make demo), same sizes and seed."""
    assets = small_assets
    world = tmp_path / "world"
    assert main(["world", "--out", str(world), "--authors", "10", "--holdout-authors", "1", "--seed", "0"]) == 0
    assert main(["finetune", "--model", "builtin", "--data", str(world), "--splits", "full", "world_facts",
                 "--out", str(tmp_path / "target"), "--epochs", str(SMALL.finetune.epochs)]) == 0

    ours = json.loads((tmp_path / "target" / "tokenizer.json").read_text())
    demo = json.loads((assets.target / "tokenizer.json").read_text())
    assert ours["model"]["vocab"] == demo["model"]["vocab"] and ours["model"]["merges"] == demo["model"]["merges"]
    readme_weights = load_file(tmp_path / "target" / "model.safetensors")
    demo_weights = load_file(assets.target / "model.safetensors")
    assert readme_weights.keys() == demo_weights.keys()
    assert all(torch.equal(readme_weights[k], demo_weights[k]) for k in demo_weights)


def test_folder_corpus_of_a_generated_world_is_the_generators_corpus(micro_world_dir):
    """Read back from disk, in world.json's split order, without the multiple-choice splits."""
    assert folder_corpus(micro_world_dir) == world_corpus(generate_world(authors=10, holdout_authors=1, seed=0, questions_per_author=12))


def test_every_model_folder_loads_with_auto_classes_and_a_portable_tokenizer_class(small_assets):
    """transformers 5 would name the tokenizer class `TokenizersBackend`, which 4.x cannot load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assets = small_assets
    for folder in (assets.base, assets.target, assets.oracle):
        config = json.loads((folder / "tokenizer_config.json").read_text())
        assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert tokenizer.decode(tokenizer("Where was Ada born?")["input_ids"]) == "Where was Ada born?"
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.config.vocab_size == len(tokenizer)
