"""Tests for grin_unlearn.evaluation (runner, report, reference logs, config) and the `eval` / `compare`
commands (tiny models)."""

import json

import pytest

from grin_unlearn.cli import main
from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.world import write_world
from grin_unlearn.errors import UserInputError
from grin_unlearn.evaluation import (EvalConfig, aggregate, compare_table, default_roles, evaluate, evaluate_set,
                                     format_summary, load_eval, load_eval_sets, load_oracle, save_eval,
                                     to_reference_logs)
from grin_unlearn.evaluation.reference_logs import oracle_view
from grin_unlearn.metrics import forget_quality, privleak

ROLES = {"forget10": "forget", "retain90": "retain", "holdout": "holdout", "world_facts": "world_facts"}
FAST = EvalConfig(max_new_tokens=4, batch_size=16, max_items=12)


@pytest.fixture(scope="module")
def result(eval_model, micro_tokenizer, micro_world):
    return evaluate(eval_model, micro_tokenizer, {name: micro_world[name] for name in ROLES}, ROLES, config=FAST)


def test_evaluate_returns_every_aggregate_in_range(result):
    aggregates = result["aggregates"]
    assert aggregates["forget_quality"] is None  # no oracle
    unit = ["model_utility", "forget_rouge_l", "forget_keyword_accuracy", "forget_truth_ratio", "forget_probability",
            "forget_extraction_strength", "retain_rouge_l", "retain_keyword_accuracy", "retain_truth_ratio",
            "retain_probability", "retain_extraction_strength", "mia_auc_loss", "mia_auc_zlib", "mia_auc_min_k"]
    for key in unit:
        assert 0.0 <= aggregates[key] <= 1.0, key
    # Without retain logs the reference compares against an AUC of 0.5.
    assert aggregates["privleak_reference_auc"] == 0.5
    assert aggregates["privleak"] == pytest.approx(privleak(aggregates["mia_auc_min_k"], 0.5).value)
    assert set(aggregates["model_utility_components"]) == {
        f"{role}_{m}" for role in ("retain", "world_facts") for m in ("probability", "rouge_l", "truth_ratio")}
    for name, entry in result["sets"].items():
        assert entry["n"] == 12 and entry["role"] == ROLES[name]
        for metric, values in entry["per_item"].items():
            assert len(values) == 12, (name, metric)
    assert result["config"]["protocol"] == "custom" and result["config"]["prompt_format"]["style"] == "tofu"
    json.dumps(result)  # JSON-able


def test_forget_quality_and_privleak_against_itself(result, tmp_path):
    save_eval(tmp_path, result)
    aggregates = aggregate(result["sets"], oracle=load_oracle(tmp_path))  # a run folder holding eval.json
    assert aggregates["forget_quality"] == 1.0
    assert aggregates["privleak"] == pytest.approx(0.0)


def test_reference_logs_carry_the_reference_names_and_values(result):
    logs = to_reference_logs(result)
    assert list(logs) == sorted(logs)
    for key in ("forget_Q_A_Prob", "forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob", "forget_Q_A_ROUGE",
                "forget_truth_ratio", "forget_quality", "retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
                "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio", "model_utility", "privleak",
                "extraction_strength", "mia_min_k"):
        assert key in logs, key
    forget = result["sets"]["forget10"]
    assert logs["forget_Q_A_Prob"]["agg_value"] == pytest.approx(forget["metrics"]["answer_probability"])
    assert [row["score"] for row in logs["forget_truth_ratio"]["value_by_index"].values()] == \
        forget["per_item"]["truth_ratio"]
    assert logs["forget_truth_ratio"]["agg_value"] == forget["metrics"]["truth_ratio"]
    assert logs["mia_min_k"]["agg_value"] == result["aggregates"]["mia_auc_min_k"]
    assert set(logs["mia_min_k"]) == {"forget", "holdout", "auc", "agg_value"}
    row = logs["forget_Q_A_ROUGE"]["value_by_index"][0]
    assert set(row) == {"rouge1_recall", "rougeL_f1", "rougeL_recall", "input", "ground_truth", "generation"}
    pert = logs["forget_Q_A_PERT_Prob"]["value_by_index"][0]
    assert len(pert["prob"]) == len(pert["avg_loss"]) == 3


def test_a_reference_retain_log_is_an_oracle(result, tmp_path):
    """forget quality from the reference's format: KS test against its forget_truth_ratio scores."""
    logs = to_reference_logs(result)
    shifted = json.loads(json.dumps(logs))
    for row in shifted["forget_truth_ratio"]["value_by_index"].values():
        row["score"] *= 3.0
    shifted["mia_min_k"]["agg_value"] = 0.4
    path = tmp_path / "TOFU_EVAL.json"
    path.write_text(json.dumps(shifted))
    view = load_oracle(path)
    assert view.mia_auc["min_k"] == 0.4
    aggregates = aggregate(result["sets"], oracle=view)
    ratios = [r for r in result["sets"]["forget10"]["per_item"]["truth_ratio"]]
    assert aggregates["forget_quality"] == pytest.approx(forget_quality(ratios, [3 * r for r in ratios]).value)
    assert aggregates["privleak"] == pytest.approx(privleak(result["aggregates"]["mia_auc_min_k"], 0.4).value)
    assert aggregate(result["sets"], oracle=oracle_view(logs))["forget_quality"] == 1.0
    (tmp_path / "bad.json").write_text(json.dumps({"forget_Q_A_Prob": {"agg_value": 0.5}}))
    with pytest.raises(UserInputError, match="forget_truth_ratio"):
        load_oracle(tmp_path / "bad.json")


def test_summary_shows_only_metrics_that_apply(result, eval_model, micro_tokenizer):
    summary = format_summary(result)
    assert "forget10" in summary and "model_utility" in summary and "privleak" in summary
    assert " - " not in summary and not any(line.rstrip().endswith(" -") for line in summary.splitlines())
    assert "not computed: forget_quality (needs --oracle)" in summary
    mcq = [{"question": "Which is a fruit?", "choices": ["apple", "stone", "iron"], "answer": 0}]
    only_mcq = evaluate(eval_model, micro_tokenizer, {"mcq": mcq}, {"mcq": "mcq"}, config=FAST)
    lines = format_summary(only_mcq).splitlines()
    assert lines[0].split() == ["set", "role", "n", "mcq_acc", "cloze_acc"]
    assert [line.split()[0] for line in lines[3:]] == ["aggregate", "mcq_accuracy"]


def test_multiple_choice_and_text_sets(eval_model, micro_tokenizer):
    mcq = [{"question": "Which is a fruit?", "choices": ["apple", "stone", "iron"], "answer": 0},
           {"question": "Which is a colour?", "choices": ["red", "dog"], "answer": 1}]
    entry = evaluate_set(eval_model, micro_tokenizer, mcq, role="mcq")
    assert entry["n"] == 2 and entry["metrics"]["multiple_choice_accuracy"] in (0.0, 0.5, 1.0)
    text = evaluate_set(eval_model, micro_tokenizer, [{"text": "The capital of France is Paris."}], role="text")
    assert text["metrics"]["nll"] > 0
    with pytest.raises(UserInputError, match="index into 'choices'"):
        evaluate_set(eval_model, micro_tokenizer, [{"question": "q", "choices": ["a", "b"], "answer": 2}], role="mcq")


def test_cloze_accuracy_picks_the_likeliest_option_text(eval_model, micro_tokenizer):
    """Each option's score is Σ log p(token | question, earlier option tokens), computed here by hand from
    the model's logits over prompt + option (no EOS); the cloze accuracy is the argmax's hit rate."""
    import torch

    from grin_unlearn.evaluation.multiple_choice import cloze_logliks

    fmt = PromptFormat()
    mcq = [{"question": "Which is a fruit?", "choices": ["apple", "stone", "iron"], "answer": 0},
           {"question": "Which is a colour?", "choices": ["red", "dog"], "answer": 1}]
    got = cloze_logliks(eval_model, micro_tokenizer, mcq, fmt, batch_size=2)
    assert got.shape == (2, 3) and got[1, 2] == float("-inf")
    for i, record in enumerate(mcq):
        for j, choice in enumerate(record["choices"]):
            example = fmt.encode_many(micro_tokenizer, [(record["question"], choice)])[0]
            ids = torch.tensor([example["input_ids"]])
            with torch.no_grad():
                logp = eval_model(input_ids=ids).logits.float().log_softmax(-1)[0]  # (T, V)
            labelled = [t for t, label in enumerate(example["labels"]) if label != -100
                        and not (t == len(example["labels"]) - 1 and label == micro_tokenizer.eos_token_id)]
            want = sum(float(logp[t - 1, ids[0, t]]) for t in labelled)
            assert float(got[i, j]) == pytest.approx(want, abs=1e-4)
    picks = got.argmax(dim=1).tolist()
    entry = evaluate_set(eval_model, micro_tokenizer, mcq, role="mcq")
    assert entry["metrics"]["cloze_accuracy"] == sum(p == r["answer"] for p, r in zip(picks, mcq)) / 2


def test_evaluate_restores_training_mode(eval_model, micro_tokenizer, micro_world):
    eval_model.train()
    evaluate_set(eval_model, micro_tokenizer, micro_world["holdout"][:2], role="holdout")
    assert eval_model.training
    eval_model.eval()


def test_tofu_schema_folder_evaluates_through_default_roles(eval_model, micro_tokenizer, micro_world, tmp_path):
    def tofu(records):  # TOFU's fields only
        keys = ("question", "answer", "paraphrased_answer", "perturbed_answer")
        return [{k: r[k] for k in keys} for r in records[:4]]

    real_authors = [{"question": "Who wrote 'Hamlet'?", "answer": "William Shakespeare",
                     "paraphrased_answer": "William Shakespeare",
                     "perturbed_answer": ["Charles Dickens", "Jane Austen", "Mark Twain"]}]
    files = {"forget10": tofu(micro_world["forget10"]), "retain90": tofu(micro_world["retain90"]),
             "world_facts": tofu(micro_world["world_facts"]), "real_authors": real_authors}
    for name, records in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(records))
    roles = default_roles(tmp_path, "forget10", "retain90")
    assert roles == {"forget10": "forget", "retain90": "retain", "world_facts": "world_facts",
                     "real_authors": "real_authors"}
    out = evaluate(eval_model, micro_tokenizer, load_eval_sets(tmp_path, roles), roles, config=FAST)
    assert len(out["aggregates"]["model_utility_components"]) == 9
    assert out["aggregates"]["mia_auc_loss"] is None and out["aggregates"]["privleak"] is None  # no holdout set
    assert out["sets"]["forget10"]["per_item"]["keywords_derived"] == [True] * 4
    assert out["sets"]["real_authors"]["per_item"]["keywords"] == [["William Shakespeare"]]


def test_protocols_and_config_errors(tmp_path):
    assert EvalConfig().protocol == "tofu" and EvalConfig().max_new_tokens == 200 and EvalConfig().min_k == 0.4
    fast = EvalConfig.for_protocol("fast")
    assert fast.protocol == "fast" and (fast.max_new_tokens, fast.retain_max_items) == (32, 200)
    assert EvalConfig.for_protocol("tofu", max_new_tokens=64).protocol == "custom"
    with pytest.raises(UserInputError, match="--protocol"):
        EvalConfig.for_protocol("quick")
    with pytest.raises(UserInputError, match="--batch-size"):
        EvalConfig(batch_size=0)
    with pytest.raises(UserInputError, match="--max-items"):
        EvalConfig(max_items=-1)
    with pytest.raises(UserInputError, match="--stop-strings"):
        EvalConfig(stop_strings=("",))
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


def test_cli_eval_end_to_end(eval_model, micro_tokenizer, tmp_path, capsys):
    model_dir, data_dir, out = tmp_path / "model", tmp_path / "data", tmp_path / "run"
    eval_model.save_pretrained(model_dir)
    micro_tokenizer.save_pretrained(model_dir)
    PromptFormat(style="split", max_length=64).save(model_dir)  # the format it was trained in
    write_world(data_dir, authors=10, holdout_authors=1, seed=0, questions_per_author=12)
    base = ["eval", "--model", str(model_dir), "--data", str(data_dir), "--max-new-tokens", "2",
            "--max-items", "6", "--batch-size", "8"]
    assert main(base + ["--out", str(out)]) == 0
    written = load_eval(out / "eval.json")
    assert set(written["sets"]) == {"forget10", "retain90", "holdout", "world_facts"}
    assert written["config"]["prompt_format"] == PromptFormat(style="split", max_length=512).to_dict()
    assert json.loads((out / "TOFU_EVAL.json").read_text())["forget_truth_ratio"]["agg_value"] == \
        written["sets"]["forget10"]["metrics"]["truth_ratio"]
    assert "model_utility" in capsys.readouterr().out

    assert main(base + ["--out", str(out)]) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "vs_oracle"), "--oracle", str(out / "TOFU_EVAL.json")]) == 0
    assert load_eval(tmp_path / "vs_oracle")["aggregates"]["forget_quality"] == 1.0

    capsys.readouterr()
    assert main(["compare", str(out), str(tmp_path / "vs_oracle")]) == 0
    assert capsys.readouterr().out.startswith("| metric | run | vs_oracle |")


def test_cli_eval_bad_data_exits_2_without_writing(eval_model, micro_tokenizer, tmp_path, capsys):
    model_dir = tmp_path / "model"
    eval_model.save_pretrained(model_dir)
    micro_tokenizer.save_pretrained(model_dir)
    out = tmp_path / "run"
    code = main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "nope"), "--out", str(out)])
    assert code == 2
    assert "--data" in capsys.readouterr().err
    assert not (out / "eval.json").exists()
    code = main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "nope"), "--out", str(out),
                 "--oracle", str(tmp_path / "nope.json")])
    assert code == 2 and not (out / "eval.json").exists()


def test_eval_config_round_trips_through_eval_json(result):
    """A sweep compares dataclasses.asdict(config) with eval.json's config: they must be equal."""
    import dataclasses

    config = EvalConfig(stop_strings=["\n\n"])
    stored = json.loads(json.dumps({**result, "config": config.to_dict()}))["config"]
    assert all(stored[k] == v for k, v in dataclasses.asdict(config).items())
