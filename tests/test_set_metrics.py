"""Metrics as data: a new per-set metric is one registered function plus its name in the protocol, and
reaches eval.json, the aggregates and the results tables from that alone."""

from __future__ import annotations

import pytest

from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.evaluation import EvalConfig, evaluate
from grin_unlearn.evaluation import set_metrics
from grin_unlearn.evaluation.set_metrics import SET_METRICS, register_set_metric
from grin_unlearn.experiments.report import format_metric, markdown_table, metrics_row, report_columns

ROLES = {"forget10": "forget", "retain90": "retain", "holdout": "holdout", "world_facts": "world_facts"}


def table_cells(table: str, column_title: str) -> list[str]:
    """The cells under ``column_title`` in a markdown table."""
    header, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    return [row[header.index(column_title)] for row in rows]


def test_a_metric_added_in_one_function_and_one_list_entry_reaches_eval_json_the_aggregates_and_the_tables(
        monkeypatch, eval_model, micro_tokenizer, micro_world):
    monkeypatch.setattr(set_metrics, "SET_METRICS", dict(SET_METRICS))  # the registration below is undone after

    @register_set_metric("answer_tokens", ("forget", "retain"), aggregate_as={"answer_tokens": "answer_tokens"},
                         columns={"answer_tokens": {"forget": "forget answer tokens"}})
    def answer_tokens(scores):
        counts = [gold.count for gold in scores.gold]
        return {"answer_tokens": sum(counts) / len(counts)}, {"answer_tokens": counts}

    monkeypatch.setattr(set_metrics, "QA_PROTOCOL", [*set_metrics.QA_PROTOCOL, "answer_tokens"])
    sets = {name: micro_world[name][:6] for name in ROLES}
    result = evaluate(eval_model, micro_tokenizer, sets, ROLES, config=EvalConfig(max_new_tokens=4, batch_size=8))
    forget = result["sets"]["forget10"]
    examples = PromptFormat().encode_many(micro_tokenizer, [(r["question"], r["answer"]) for r in sets["forget10"]])
    labels = [sum(label != -100 for label in example["labels"]) for example in examples]
    assert forget["per_item"]["answer_tokens"] == labels  # a hand count of the labelled answer tokens
    assert forget["metrics"]["answer_tokens"] == pytest.approx(sum(labels) / len(labels))
    assert result["aggregates"]["forget_answer_tokens"] == forget["metrics"]["answer_tokens"]
    assert result["aggregates"]["retain_answer_tokens"] == result["sets"]["retain90"]["metrics"]["answer_tokens"]
    assert "answer_tokens" not in result["sets"]["world_facts"]["metrics"]  # a role it does not read
    keys = [key for key, _ in report_columns()]
    assert keys[keys.index("forget_keyword_accuracy") + 1] == "forget_answer_tokens"  # after the forget columns
    assert "retain_answer_tokens" not in keys  # declared for the forget role only
    table = markdown_table([metrics_row("model", result)])
    assert table_cells(table, "forget answer tokens") == [format_metric(forget["metrics"]["answer_tokens"])]


def test_the_protocol_skips_membership_scores_without_mia_and_generation_metrics_without_answers(
        eval_model, micro_tokenizer, micro_world):
    sets = {name: micro_world[name][:4] for name in ROLES}
    full = evaluate(eval_model, micro_tokenizer, sets, ROLES, config=EvalConfig(max_new_tokens=4, batch_size=8))
    lean = evaluate(eval_model, micro_tokenizer, sets, ROLES,
                    config=EvalConfig(max_new_tokens=4, batch_size=8, mia=False, generation=False))
    membership = {"mia_loss", "mia_zlib", "mia_min_k"}
    assert membership <= set(full["sets"]["holdout"]["metrics"]) and membership <= set(full["sets"]["forget10"]["metrics"])
    assert {"rouge_l_recall", "keyword_accuracy"} <= set(full["sets"]["retain90"]["metrics"])
    for name, entry in lean["sets"].items():
        assert not (membership | {"rouge_l_recall", "keyword_accuracy"}) & set(entry["metrics"])
        assert entry["metrics"]["answer_probability"] == full["sets"][name]["metrics"]["answer_probability"]


def test_registering_a_name_twice_or_an_unknown_stage_is_refused(monkeypatch):
    monkeypatch.setattr(set_metrics, "SET_METRICS", dict(SET_METRICS))
    with pytest.raises(ValueError, match="already registered"):
        register_set_metric("truth_ratio", ("forget",))(lambda scores: ({}, {}))
    with pytest.raises(ValueError, match="stage"):
        register_set_metric("x", ("forget",), stage="later")
    with pytest.raises(ValueError, match="aggregate_as"):  # a column must be a number the aggregates copy up
        register_set_metric("y", ("forget",), columns={"y": {"forget": "forget y"}})
    with pytest.raises(ValueError, match="forget"):
        register_set_metric("z", ("holdout",), aggregate_as={"z": "z"}, columns={"z": {"holdout": "holdout z"}})


def test_a_cross_set_number_added_in_one_function_and_one_list_entry_reaches_the_aggregates(
        monkeypatch, eval_model, micro_tokenizer, micro_world):
    """A new cross-set aggregate: one registered function plus its name in QA_AGGREGATES. Here the gap
    between the retain and forget answer probabilities, checked against the per-set numbers."""
    from grin_unlearn.evaluation import aggregates
    from grin_unlearn.evaluation.aggregates import AGGREGATES, register_aggregate

    monkeypatch.setattr(aggregates, "AGGREGATES", dict(AGGREGATES))

    @register_aggregate("probability_gap", ("forget", "retain"), needs={"probability_gap": "a retain set"},
                        columns={"probability_gap": "probability gap"})
    def probability_gap(inputs):
        forget, retain = inputs.first("forget"), inputs.first("retain")
        if forget is None or retain is None:
            return {"probability_gap": None}
        return {"probability_gap": retain["metrics"]["answer_probability"] - forget["metrics"]["answer_probability"]}

    monkeypatch.setattr(aggregates, "QA_AGGREGATES", [*aggregates.QA_AGGREGATES, "probability_gap"])
    sets = {name: micro_world[name][:6] for name in ROLES}
    config = EvalConfig(max_new_tokens=4, batch_size=8, mia=False)
    result = evaluate(eval_model, micro_tokenizer, sets, ROLES, config=config)
    by_set = {name: entry["metrics"]["answer_probability"] for name, entry in result["sets"].items()}
    assert result["aggregates"]["probability_gap"] == pytest.approx(by_set["retain90"] - by_set["forget10"])
    assert aggregates.needs()["probability_gap"] == "a retain set"
    assert report_columns()[-3] == ("probability_gap", "probability gap")  # the cross-set columns, then retain's
    table = markdown_table([metrics_row("model", result)])
    assert table_cells(table, "probability gap") == [format_metric(result["aggregates"]["probability_gap"])]
    without_retain = evaluate(eval_model, micro_tokenizer, {"forget10": sets["forget10"]}, {"forget10": "forget"},
                              config=config)
    assert without_retain["aggregates"]["probability_gap"] is None
    with pytest.raises(ValueError, match="already registered"):
        register_aggregate("forget_quality", ("forget",))(lambda inputs: {})


def test_a_multiple_choice_metric_is_one_function_and_one_list_entry_and_a_pass_runs_only_when_read(
        monkeypatch, eval_model, micro_tokenizer, micro_world):
    """The WMDP-style protocol is a list too: a metric reading the letter logits joins it with one
    registration, and the cloze pass (one scored sequence per option) never runs when no listed metric
    reads it."""
    from grin_unlearn.data.world import multiple_choice_splits
    from grin_unlearn.evaluation import multiple_choice

    monkeypatch.setattr(set_metrics, "SET_METRICS", dict(SET_METRICS))

    @register_set_metric("letter_pick", ("mcq",))
    def letter_pick(choices):
        picks = choices.letter_logits.argmax(dim=-1).tolist()
        return {"letter_pick": sum(picks) / len(picks)}, {"letter_pick": picks}

    def no_cloze_pass(*args, **kwargs):
        raise AssertionError("the cloze pass ran, though no metric of the protocol reads it")

    monkeypatch.setattr(multiple_choice, "cloze_logliks", no_cloze_pass)
    records = multiple_choice_splits(micro_world, seed=0)["forget_mcq"][:6]
    metrics, per_item = multiple_choice.evaluate_mcq(eval_model, micro_tokenizer, records, PromptFormat(), 4,
                                                     protocol=["multiple_choice_accuracy", "letter_pick"])
    picks = per_item["letter_pick"]
    assert per_item["multiple_choice_accuracy"] == [float(p == r["answer"]) for p, r in zip(picks, records)]
    assert metrics["letter_pick"] == pytest.approx(sum(picks) / len(picks))
    assert list(metrics) == ["multiple_choice_accuracy", "letter_pick"]  # the list's order
