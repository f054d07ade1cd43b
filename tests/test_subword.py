"""The built-in subword tokenizer and the background corpus: real segmentation, no forget-only token."""

from __future__ import annotations

import json

import pytest

from grin_unlearn.cli import main
from grin_unlearn.data.background import (FORGET_SPLITS, background_texts, forget_only_token_ids,
                                          training_texts)
from grin_unlearn.data.world import generate_world, world_corpus, write_world
from grin_unlearn.subword import compact_subword_tokenizer, sentencepiece_model_path

sentencepiece = pytest.importorskip("sentencepiece")


@pytest.fixture(scope="module")
def world_and_tokenizer():
    splits = generate_world(authors=40, holdout_authors=4, seed=0)
    names = {r["author"] for r in splits["full"] + splits["holdout"]}
    sentences, pool = background_texts(names, 40, seed=0)
    return splits, sentences, compact_subword_tokenizer(world_corpus(splits) + sentences + pool)


def test_compacted_tokenizer_segments_every_string_as_the_full_sentencepiece_model(world_and_tokenizer, tmp_path):
    """Same pieces as Mistral-7B v0.1's SentencePiece on every world string, and the same ids after a
    save / AutoTokenizer round trip; decoding gives the string back."""
    from transformers import AutoTokenizer

    splits, sentences, tokenizer = world_and_tokenizer
    full = sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model_path()))
    texts = world_corpus(splits) + sentences
    ours = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for text, ids in zip(texts, ours):
        assert tokenizer.convert_ids_to_tokens(ids) == full.encode(text, out_type=str), text
        assert tokenizer.decode(ids) == text
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(texts, add_special_tokens=False)["input_ids"] == ours
    # names split into subwords that other words share; the vocabulary is a small part of 32,000
    assert len(tokenizer.tokenize(" Shyththar")) >= 3
    assert len(tokenizer) < 4000


def test_text_outside_the_corpus_still_encodes_and_decodes_through_byte_fallback(world_and_tokenizer):
    _, _, tokenizer = world_and_tokenizer
    text = "Zürich ✓ qwxj 42"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert tokenizer.unk_token_id not in tokenizer(text, add_special_tokens=False)["input_ids"]


def test_without_the_coverage_step_some_token_only_the_forget_split_trains(world_and_tokenizer):
    """The counter can fail: random background text leaves forget-only ids (this world: 3 in forget10)."""
    splits, sentences, tokenizer = world_and_tokenizer
    missing = forget_only_token_ids(tokenizer, splits, sentences, "forget10")
    assert missing
    forget_ids = {i for ids in tokenizer(training_texts(splits["forget10"]), add_special_tokens=False)["input_ids"]
                  for i in ids}
    assert set(missing) <= forget_ids


@pytest.mark.parametrize(("authors", "seed"), [(10, 0), (20, 1), (40, 0), (60, 2)])
def test_every_world_has_no_token_that_only_its_forget_split_trains(tmp_path, authors, seed):
    """Recounted here from the written files, not read from world.json's own report."""
    folder = write_world(tmp_path / "w", authors=authors, holdout_authors=max(1, authors // 10), seed=seed)
    manifest = json.loads((folder / "world.json").read_text())
    splits = {name: json.loads((folder / f"{name}.json").read_text()) for name in manifest["splits"]}
    background = [r["text"] for r in splits.pop("background")]
    tokenizer = compact_subword_tokenizer(world_corpus(splits) + background)
    for split in FORGET_SPLITS:
        assert forget_only_token_ids(tokenizer, splits, background, split) == []
        assert manifest["background"]["forget_only_token_ids"][split] == 0
    names = {r["author"] for r in splits["full"] + splits["holdout"]}
    assert not any(name in text for text in background for name in names)


def test_world_command_prints_the_forget_only_count_and_tofu_sizes(tmp_path, capsys):
    assert main(["world", "--out", str(tmp_path / "w"), "--authors", "200", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "forget01 40, forget05 200, forget10 400, holdout 400" in out
    assert "only the forget split trains: forget01 0, forget05 0, forget10 0" in out
