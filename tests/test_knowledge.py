"""The real-model benchmark's pieces that need no real model: the knowledge set and its role, the
fine-tune's max length, the portable model folder, the table's empty columns."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.knowledge import (first_sentence, keep_answered, knowledge_candidates, knowledge_records,
                                         matched_alias)
from grin_unlearn.evaluation import EvalConfig, default_roles, evaluate
from grin_unlearn.evaluation.aggregates import aggregate
from grin_unlearn.experiments.report import markdown_table
from grin_unlearn.models import build_tiny_model, save_model_folder
from grin_unlearn.training.finetune import FinetuneConfig, finetune, longest_example
from tests.conftest import MICRO_MODEL


def test_an_answer_counts_when_its_first_sentence_names_an_accepted_form():
    assert matched_alias("The answer is 7.", ["seven", "7"]) == "7"
    assert matched_alias("It has 17 legs.", ["7", "seven"]) is None  # whole words only
    assert first_sentence("Written by J.K. Rowling. Later Dr. Who.") == "Written by J.K. Rowling."
    candidates = [{"question": "Which particle is negative?", "answer": "Electron", "aliases": ["Electron"],
                   "category": "science"},
                  {"question": "Capital of France?", "answer": "Paris", "aliases": ["Paris"], "category": "geography"}]
    kept = keep_answered(candidates, ["It is a proton. The electron is positive.", "Paris, of course.\nYes."])
    assert [r["question"] for r in kept] == ["Capital of France?"]
    assert kept[0]["keywords"] == ["Paris"] and kept[0]["base_answer"] == "Paris, of course.\nYes."


def test_the_packaged_set_is_a_subset_of_the_candidates_with_at_least_100_questions():
    candidates = {c["question"]: c for c in knowledge_candidates()}
    records = knowledge_records()
    assert len(records) >= 100 and len({r["question"] for r in records}) == len(records)
    for record in records:
        source = candidates[record["question"]]
        assert record["aliases"] == source["aliases"] and record["keywords"][0] in source["aliases"]
        # the rule that kept it holds on the answer it records
        assert matched_alias(first_sentence(record["base_answer"]), record["aliases"]) == record["keywords"][0]


def test_knowledge_role_scores_keywords_and_joins_model_utility(micro_world, micro_tokenizer, eval_model, tmp_path):
    """A ``real_knowledge`` split is found by default_roles, scored by keyword accuracy and ROUGE-L (no
    probability metric), copied up as ``knowledge_accuracy``, and both numbers are components of model
    utility: the harmonic mean over every component equals the hand computation."""
    knowledge = [{"question": "Capital of France?", "answer": "Paris", "keywords": ["Paris"]},
                 {"question": "Capital of Japan?", "answer": "Tokyo", "keywords": ["Tokyo"]}]
    for name, records in (("forget10", micro_world["forget10"][:3]), ("retain90", micro_world["retain90"][:3]),
                          ("real_knowledge", knowledge)):
        (tmp_path / f"{name}.json").write_text(json.dumps(records))
    roles = default_roles(tmp_path)
    assert roles["real_knowledge"] == "knowledge"
    sets = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in roles}
    generations = {"real_knowledge": ["It is Paris.", "Kyoto, I think."],
                   **{name: [r["answer"] for r in sets[name]] for name in ("forget10", "retain90")}}
    out = evaluate(eval_model, micro_tokenizer, sets, roles, PromptFormat(style="split"),
                   EvalConfig(max_new_tokens=4, mia=False), generations=generations)
    metrics = out["sets"]["real_knowledge"]["metrics"]
    assert metrics["keyword_accuracy"] == 0.5 and "answer_probability" not in metrics
    aggregates = out["aggregates"]
    assert aggregates["knowledge_accuracy"] == 0.5
    components = aggregates["model_utility_components"]
    assert components["knowledge_keyword_accuracy"] == 0.5
    assert components["knowledge_rouge_l"] == pytest.approx(metrics["rouge_l_recall"])
    values = list(components.values())
    assert all(v > 0 for v in values)
    assert aggregates["model_utility"] == pytest.approx(len(values) / sum(1 / v for v in values))
    without = aggregate({k: v for k, v in out["sets"].items() if k != "real_knowledge"})
    assert "knowledge_keyword_accuracy" not in without["model_utility_components"]


def test_finetune_fits_the_longest_example_and_reports_what_a_shorter_length_cuts(micro_world, micro_tokenizer,
                                                                                  tmp_path):
    records = micro_world["full"][:8]
    fmt = PromptFormat(style="split")
    longest = longest_example(micro_tokenizer, records, fmt)
    lengths = [len(micro_tokenizer(r["question"] + " " + r["answer"])["input_ids"]) for r in records]
    assert longest >= max(lengths)
    finetune(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0), micro_tokenizer, records,
             FinetuneConfig(epochs=1, batch_size=8), tmp_path / "auto", fmt=fmt)
    auto = json.loads((tmp_path / "auto" / "finetune.json").read_text())
    assert auto["max_length"] == longest and auto["truncated"] == 0
    assert json.loads((tmp_path / "auto" / "prompt_format.json").read_text())["max_length"] == longest
    short = longest - 3
    expected = sum(len(e["input_ids"]) > short for e in fmt.with_max_length(1 << 20).encode_many(
        micro_tokenizer, [(r["question"], r["answer"]) for r in records]))
    finetune(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0), micro_tokenizer, records,
             FinetuneConfig(epochs=1, batch_size=8, max_length=short), tmp_path / "short", fmt=fmt)
    cut = json.loads((tmp_path / "short" / "finetune.json").read_text())
    assert cut["max_length"] == short and cut["truncated"] == expected > 0


def test_saved_folder_writes_rope_base_and_chat_template_for_transformers_4(micro_tokenizer, tmp_path):
    model = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
    model.config.rope_theta = 12345.0
    if isinstance(getattr(model.config, "rope_parameters", None), dict):
        model.config.rope_parameters["rope_theta"] = 12345.0
    micro_tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    try:
        save_model_folder(model, micro_tokenizer, tmp_path / "m")
    finally:
        micro_tokenizer.chat_template = None
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["rope_theta"] == 12345.0
    tokenizer_config = json.loads((tmp_path / "m" / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"].startswith("{% for m in messages %}")
    assert AutoTokenizer.from_pretrained(tmp_path / "m").chat_template == tokenizer_config["chat_template"]


def test_results_tables_leave_out_columns_no_row_fills():
    rows = [{"method": "a", "forget_rouge_l": 0.5, "knowledge_accuracy": None},
            {"method": "b", "forget_rouge_l": 0.25, "knowledge_accuracy": None}]
    assert "knowledge acc" not in markdown_table(rows)
    rows[1]["knowledge_accuracy"] = 0.75
    table = markdown_table(rows)
    assert "knowledge acc" in table and "0.750" in table and "forget ROUGE-L" in table
