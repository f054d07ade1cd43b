"""Tests for grin_unlearn.evaluate / eval_report and the `eval` / `compare` commands (tiny models)."""

import copy
import json

import pytest
import torch

from grin_unlearn.cli import main
from grin_unlearn.data.formatting import PadCollator, PromptFormat, encode_records
from grin_unlearn.data.world import generate_world, world_corpus, write_world
from grin_unlearn.errors import UserInputError
from grin_unlearn.eval_report import compare_table, format_summary, load_eval, save_eval
from grin_unlearn.evaluate import (EvalConfig, aggregate, default_roles, evaluate, evaluate_set, generate_answers,
                                   load_eval_sets, score_answers)
from grin_unlearn.models import TinyModelConfig, build_tiny_model, train_tokenizer

ROLES = {"forget10": "forget", "retain90": "retain", "holdout": "holdout", "world_facts": "world_facts"}
FAST = EvalConfig(max_new_tokens=4, batch_size=16, max_items=12)


@pytest.fixture(scope="module")
def world():
    return generate_world(10, 1, 0)


@pytest.fixture(scope="module")
def tokenizer(world):
    return train_tokenizer(world_corpus(world), 512)


@pytest.fixture(scope="module")
def model(tokenizer):
    config = TinyModelConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    return build_tiny_model(config, tokenizer, seed=0)


@pytest.fixture(scope="module")
def result(model, tokenizer, world):
    return evaluate(model, tokenizer, {name: world[name] for name in ROLES}, ROLES, config=FAST)


def test_evaluate_returns_every_aggregate_in_range(result):
    aggregates = result["aggregates"]
    assert aggregates["forget_quality"] is None  # no oracle
    for key in ("privleak_loss", "privleak_zlib", "privleak_min_k"):
        assert aggregates[key] is None
    unit = ["model_utility", "forget_rouge_l", "forget_keyword_accuracy", "forget_truth_ratio", "forget_probability",
            "forget_extraction_strength", "retain_rouge_l", "retain_keyword_accuracy", "retain_truth_ratio",
            "retain_probability", "retain_extraction_strength", "mia_auc_loss", "mia_auc_zlib", "mia_auc_min_k"]
    for key in unit:
        assert 0.0 <= aggregates[key] <= 1.0, key
    # Utility = harmonic mean of prob, ROUGE-L, truth ratio on retain and world_facts (no real_authors here).
    assert set(aggregates["model_utility_components"]) == {
        f"{role}_{m}" for role in ("retain", "world_facts") for m in ("probability", "rouge_l", "truth_ratio")}
    for name, entry in result["sets"].items():
        assert entry["n"] == 12 and entry["role"] == ROLES[name]
        for metric, values in entry["per_item"].items():
            assert len(values) == 12, (name, metric)
    assert "normalized_option_probability" in result["sets"]["world_facts"]["metrics"]
    assert "normalized_option_probability" not in result["sets"]["retain90"]["metrics"]
    # holdout exists for membership inference only: no generation, no truth ratio.
    assert set(result["sets"]["holdout"]["metrics"]) == {
        "answer_probability", "extraction_strength", "mia_loss", "mia_zlib", "mia_min_k"}
    json.dumps(result)  # JSON-able
    assert "forget10" in format_summary(result) and "model_utility" in format_summary(result)


def test_forget_quality_against_itself_is_one(result, tmp_path):
    save_eval(tmp_path, result)
    oracle = load_eval(tmp_path)  # a run folder holding eval.json
    aggregates = aggregate(result["sets"], oracle=oracle)
    assert aggregates["forget_quality"] == 1.0
    assert aggregates["privleak_loss"] == pytest.approx(0.0)


def test_perfect_generator_scores_one(model, tokenizer, world):
    records = world["forget10"][:6]
    entry = evaluate_set(model, tokenizer, records, PromptFormat(), FAST, "forget",
                         generations=[r["answer"] for r in records])
    assert entry["metrics"]["rouge_l_recall"] == 1.0
    assert entry["metrics"]["keyword_accuracy"] == 1.0
    assert entry["per_item"]["generation"] == [r["answer"] for r in records]


def test_batching_does_not_change_scores_or_generations(model, tokenizer, world):
    """Right padding (teacher forcing) and left padding (generation) give the unbatched results."""
    records, fmt = world["forget10"][:5], PromptFormat()
    pairs = [(r["question"], a) for r in records for a in (r["answer"], *r["perturbed_answer"])]
    one, many = (score_answers(model, tokenizer, pairs, fmt, b) for b in (1, 8))
    for pair in pairs:
        assert one[pair].labels == many[pair].labels and one[pair].argmax == many[pair].argmax
        assert one[pair].sum_logp == pytest.approx(many[pair].sum_logp, abs=1e-4)
    questions = [r["question"] for r in records]
    single = generate_answers(model, tokenizer, questions, fmt, EvalConfig(max_new_tokens=6, batch_size=1))
    batched = generate_answers(model, tokenizer, questions, fmt, EvalConfig(max_new_tokens=6, batch_size=5))
    assert single == batched


def test_multiple_choice_and_text_sets(model, tokenizer):
    mcq = [{"question": "Which is a fruit?", "choices": ["apple", "stone", "iron"], "answer": 0},
           {"question": "Which is a colour?", "choices": ["red", "dog"], "answer": 1}]
    entry = evaluate_set(model, tokenizer, mcq, role="mcq")
    assert entry["n"] == 2 and entry["metrics"]["multiple_choice_accuracy"] in (0.0, 0.5, 1.0)
    text = evaluate_set(model, tokenizer, [{"text": "The capital of France is Paris."}], role="text")
    assert text["metrics"]["nll"] > 0
    with pytest.raises(UserInputError, match="option index"):
        evaluate_set(model, tokenizer, [{"question": "q", "choices": ["a", "b"], "answer": 2}], role="mcq")


def test_evaluate_restores_training_mode(model, tokenizer, world):
    model.train()
    evaluate_set(model, tokenizer, world["holdout"][:2], role="holdout")
    assert model.training
    model.eval()


def test_tofu_schema_folder_evaluates_through_default_roles(model, tokenizer, world, tmp_path):
    def tofu(records):  # TOFU's fields only
        keys = ("question", "answer", "paraphrased_answer", "perturbed_answer")
        return [{k: r[k] for k in keys} for r in records[:4]]

    real_authors = [{"question": "Who wrote 'Hamlet'?", "answer": "William Shakespeare",
                     "paraphrased_answer": "William Shakespeare",
                     "perturbed_answer": ["Charles Dickens", "Jane Austen", "Mark Twain"]}]
    files = {"forget10": tofu(world["forget10"]), "retain90": tofu(world["retain90"]),
             "world_facts": tofu(world["world_facts"]), "real_authors": real_authors}
    for name, records in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(records))
    roles = default_roles(tmp_path, "forget10", "retain90")
    assert roles == {"forget10": "forget", "retain90": "retain", "world_facts": "world_facts",
                     "real_authors": "real_authors"}
    out = evaluate(model, tokenizer, load_eval_sets(tmp_path, roles), roles, config=FAST)
    assert len(out["aggregates"]["model_utility_components"]) == 9
    assert out["aggregates"]["mia_auc_loss"] is None  # no holdout set
    assert out["sets"]["forget10"]["metrics"]["keyword_accuracy"] >= 0  # no keywords: falls back to the answer


def test_config_and_file_errors(tmp_path):
    with pytest.raises(UserInputError, match="--batch-size"):
        EvalConfig(batch_size=0)
    with pytest.raises(UserInputError, match="--max-items"):
        EvalConfig(max_items=-1)
    with pytest.raises(UserInputError, match="no eval.json"):
        load_eval(tmp_path)
    (tmp_path / "eval.json").write_text('{"sets": []}')
    with pytest.raises(UserInputError, match="malformed"):
        load_eval(tmp_path)
    with pytest.raises(UserInputError, match="not a folder"):
        default_roles(tmp_path / "missing", "forget10", "retain90")


def test_compare_table_is_markdown(result):
    table = compare_table({"a": result, "b": {"sets": {}, "aggregates": {"forget_quality": 0.5}}})
    lines = table.splitlines()
    assert lines[0] == "| metric | a | b |"
    assert "| forget_quality | - | 0.5000 |" in lines


def test_cli_eval_end_to_end(model, tokenizer, tmp_path, capsys):
    model_dir, data_dir, out = tmp_path / "model", tmp_path / "data", tmp_path / "run"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    write_world(data_dir, authors=10, holdout_authors=1, seed=0)
    base = ["eval", "--model", str(model_dir), "--data", str(data_dir), "--max-new-tokens", "2",
            "--max-items", "6", "--batch-size", "8"]
    assert main(base + ["--out", str(out)]) == 0
    written = load_eval(out / "eval.json")
    assert set(written["sets"]) == {"forget10", "retain90", "holdout", "world_facts"}
    assert "model_utility" in capsys.readouterr().out

    assert main(base + ["--out", str(out)]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "vs_oracle"), "--oracle", str(out)]) == 0
    assert load_eval(tmp_path / "vs_oracle")["aggregates"]["forget_quality"] == 1.0

    capsys.readouterr()
    assert main(["compare", str(out), str(tmp_path / "vs_oracle")]) == 0
    assert capsys.readouterr().out.startswith("| metric | run | vs_oracle |")


def test_cli_eval_bad_data_exits_2_without_writing(model, tokenizer, tmp_path, capsys):
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    code = main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "nope"), "--out", str(out)])
    assert code == 2
    assert "--data" in capsys.readouterr().err
    assert not (out / "eval.json").exists()


def test_brief_fine_tuning_raises_forget_scores(model, tokenizer, world):
    """Train a copy of the tiny model on 4 forget items: their probability and extraction strength rise."""
    records, fmt = world["forget10"][:4], PromptFormat()
    config = EvalConfig(max_new_tokens=16, batch_size=8)
    before = evaluate_set(model, tokenizer, records, fmt, config, "forget")
    trained = copy.deepcopy(model).train()
    batch = PadCollator(tokenizer.pad_token_id)(encode_records(tokenizer, records, fmt))
    optimizer = torch.optim.Adam(trained.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(60):
        optimizer.zero_grad()
        trained(**batch).loss.backward()
        optimizer.step()
    after = evaluate_set(trained, tokenizer, records, fmt, config, "forget")
    assert after["metrics"]["answer_probability"] > 0.5 > before["metrics"]["answer_probability"]
    assert after["metrics"]["extraction_strength"] > before["metrics"]["extraction_strength"]
    assert after["metrics"]["rouge_l_recall"] > before["metrics"]["rouge_l_recall"]
