"""The tuner: the selection rule on hand-made trials, kill/restart on the SQLite storage, the tuner
file's checks, and a micro tuner run end to end (completes, disjoint validation split, resumes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grin_unlearn.cli import main
from grin_unlearn.data.records import load_qa_split
from grin_unlearn.errors import TrainingStoppedError, UserInputError
from grin_unlearn.experiments.tune import (counted, counted_trials, open_study, run_trials, select_trial,
                                          suggest_params)
from grin_unlearn.experiments.tune_report import pareto_front
from grin_unlearn.experiments.tune_spec import DEFAULT_RULE, load_tune_spec, parse_tune_spec

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tune"
RULE = DEFAULT_RULE  # highest model utility among trials with forget quality >= 0.05, else highest forget quality


def _row(number, fq, mu, **extra):
    return {"number": number, "forget_quality": fq, "model_utility": mu, **extra}


def test_rule_takes_the_best_utility_among_trials_that_forget_enough():
    rows = [_row(0, 0.01, 0.95), _row(1, 0.06, 0.50), _row(2, 0.20, 0.70), _row(3, 0.05, 0.70), _row(4, None, 0.99)]
    chosen, reason = select_trial(rows, RULE)
    # Trial 0 has the best utility but forgets too little, 4 has no forget quality; 2 and 3 tie at 0.70
    # (0.05 meets the bound: it is inclusive) and the earlier trial wins.
    assert chosen["number"] == 2 and "3 trial(s)" in reason


def test_rule_falls_back_to_the_best_forget_quality():
    rows = [_row(0, 0.01, 0.95), _row(1, 0.04, 0.10), _row(2, 0.02, 0.80)]
    chosen, reason = select_trial(rows, RULE)
    assert chosen["number"] == 1 and "fallback" in reason
    assert select_trial([], RULE) == (None, "no finished trial")


def test_rule_with_an_upper_bound_and_another_metric():
    rule = {"maximize": "retain_keyword_accuracy", "subject_to": {"forget_keyword_accuracy": {"max": 0.1}},
            "fallback": "forget_quality"}
    rows = [_row(0, 0.3, 0.9, retain_keyword_accuracy=0.9, forget_keyword_accuracy=0.2),
            _row(1, 0.1, 0.9, retain_keyword_accuracy=0.6, forget_keyword_accuracy=0.1),
            _row(2, 0.1, 0.9, retain_keyword_accuracy=0.5, forget_keyword_accuracy=0.0)]
    assert select_trial(rows, rule)[0]["number"] == 1


def test_pareto_front_keeps_only_undominated_trials():
    rows = [_row(0, 0.1, 0.5), _row(1, 0.2, 0.4), _row(2, 0.05, 0.45), _row(3, 0.1, 0.5), _row(4, 0.01, 0.9)]
    assert [r["number"] for r in pareto_front(rows)] == [1, 0, 3, 4]  # 2 is beaten by 0 on both


def _space():
    return parse_tune_spec({"space": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
                                      "train.epochs": {"low": 1, "high": 5}},
                            "eval": {"mia": False}}).space


def test_killed_trials_are_retried_and_finished_ones_never_rerun(tmp_path):
    """A process killed during trial 2 leaves it RUNNING in the SQLite storage; a new process counts
    trial 1 as done, retries trial 2's exact params first, and stops at the budget. A trial that
    diverges (TrainingStoppedError) uses its share of the budget."""
    storage, space = tmp_path / "study.db", _space()
    calls = []

    def metrics(params):
        return {"forget_quality": params["train.lr"], "model_utility": 1 - params["train.lr"], "seconds": 0.0}

    def evaluate(params):
        calls.append(params)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the kill, in the middle of trial 2
        return metrics(params)

    study = open_study(storage, "npo_grin", seed=0, trials=4)
    with pytest.raises(KeyboardInterrupt):
        run_trials(study, 4, lambda t: suggest_params(t, space), evaluate, RULE, log=lambda *a: None)
    first, interrupted = calls
    calls.clear()

    def evaluate_again(params):
        calls.append(params)
        if len(calls) == 2:
            raise TrainingStoppedError("loss is nan at step 3")
        return metrics(params)

    restarted = open_study(storage, "npo_grin", seed=0, trials=4)  # a fresh process: only the storage is shared
    run_trials(restarted, 4, lambda t: suggest_params(t, space), evaluate_again, RULE, log=lambda *a: None)
    assert calls[0] == interrupted  # the interrupted point, retried first
    assert first not in calls  # the finished trial was not run again
    assert len(calls) == 3  # budget 4 = trial 1 + the retried one + a diverged one + one more
    trials = restarted.get_trials()
    assert sum(counted(t) for t in trials) == 4
    assert [t.state.name for t in trials if not counted(t)] == ["FAIL"]  # the interrupted attempt, not counted
    assert any(t.user_attrs.get("error") for t in trials if counted(t))  # the diverged trial is counted
    assert all(1e-4 <= t.params["train.lr"] <= 1e-2 and 1 <= t.params["train.epochs"] <= 5 for t in trials)


def test_a_restarted_study_draws_new_points_and_a_repeated_point_is_not_counted(tmp_path):
    """Stopped after one trial and restarted, a sampler seeded as at the start would draw trial 0's point
    again (its random start replays): it is seeded past the trials already run, and a repeated point
    (from any sampler) does not use budget."""
    storage, space = tmp_path / "study.db", _space()
    calls = []

    def evaluate(params):
        calls.append(params)
        return {"forget_quality": params["train.lr"], "model_utility": 1 - params["train.lr"], "seconds": 0.0}

    run_trials(open_study(storage, "m", seed=0, trials=6), 1, lambda t: suggest_params(t, space), evaluate, RULE,
               log=lambda *a: None)
    run_trials(open_study(storage, "m", seed=0, trials=6), 3, lambda t: suggest_params(t, space), evaluate, RULE,
               log=lambda *a: None)
    assert len(calls) == 3 and len({json.dumps(c, sort_keys=True) for c in calls}) == 3
    study = open_study(storage, "m", seed=0, trials=6)
    study.enqueue_trial(calls[0])  # a sampler that draws trial 0's point again
    run_trials(study, 4, lambda t: suggest_params(t, space), evaluate, RULE, log=lambda *a: None)
    trials = study.get_trials()
    assert len(trials) == 5 and sum(counted(t) for t in trials) == 5 and len(counted_trials(trials)) == 4
    assert calls[3] == calls[0] and calls[4] not in calls[:4]  # the repeat ran (its folder is reused) but cost no budget


@pytest.mark.parametrize("bad, message", [
    ({"scorers": ["grin", "best"]}, "unknown scorers"),
    ({"space": {"train.lr": {"low": 1e-2, "high": 1e-4}}}, "low < high"),
    ({"space": {"train.seed": {"choices": [0, 1]}}}, "not tuned"),
    ({"space": {"selection.ratios": {"low": 0.1, "high": 0.5}}}, "unknown field"),
    ({"select": {"maximize": "happiness"}}, "unknown metric"),
    ({"trials": 0}, "positive integer"),
    ({"validation": {"authors": 0}}, "validation.authors"),
    ({"model": "m", "data": "d", "validation": {"forget": "forget05", "retain": "retain95"}}, "oracle"),
])
def test_tuner_file_errors_name_the_input(bad, message):
    mapping = {"space": {"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}}, **bad}
    with pytest.raises(UserInputError, match=message):
        parse_tune_spec(mapping, "t.yaml")


def test_shipped_tuner_files_parse():
    files = sorted(CONFIGS.glob("*.yaml"))
    assert files
    for path in files:
        spec = load_tune_spec(path)
        assert spec.methods and spec.trials >= 1
        none = [m for m in spec.methods if m.scorer == "none"]
        assert all(not p.masked_only for m in none for p in spec.space_for(m))  # no p/σ² for a full fine-tune


@pytest.mark.slow
def test_micro_tuner_run_completes_and_resumes(tmp_path):
    out, cache = tmp_path / "tune", tmp_path / "cache"
    args = ["tune", str(CONFIGS / "micro_test.yaml"), "--out", str(out), "--cache-dir", str(cache)]
    assert main(args) == 0
    state = json.loads((out / "tune.json").read_text())
    assert state["status"] == "finished"
    for name in ("npo_none", "npo_grin"):
        entry = state["methods"][name]
        assert len(entry["trials"]) == 2  # the same budget for each method
        assert entry["chosen"]["number"] in {t["number"] for t in entry["trials"]}
        assert [f["seed"] for f in entry["finals"]] == [0]
        assert all((out / f["dir"] / "eval.json").is_file() for f in entry["finals"])
    # Round robin: trial r of every method runs before trial r + 1 of any.
    trials = [(out / t["dir"] / "eval.json", name) for name, e in state["methods"].items() for t in e["trials"]]
    order = [name for path, name in sorted(trials, key=lambda item: item[0].stat().st_mtime_ns)]
    assert order == ["npo_none", "npo_grin", "npo_none", "npo_grin"]
    assert all("selection.ratio" not in t["params"] for t in state["methods"]["npo_none"]["trials"])
    assert all("selection.ratio" in t["params"] for t in state["methods"]["npo_grin"]["trials"])
    # The validation authors are the one just before the reported forget10 author, and nowhere else.
    world = Path(state["validation"]["data"])
    reported = {r["author"] for r in load_qa_split(world, "forget10")}
    val_forget = {r["author"] for r in load_qa_split(world, "validation_forget")}
    val_retain = {r["author"] for r in load_qa_split(world, "validation_retain")}
    assert val_forget == set(state["validation"]["authors"]) and len(val_forget) == len(reported) == 1
    assert not val_forget & reported and not val_forget & val_retain and not reported & val_retain
    order = list(dict.fromkeys(r["author"] for r in load_qa_split(world, "full")))
    assert order.index(next(iter(val_forget))) == order.index(next(iter(reported))) - 1
    report = (out / "report.md").read_text()
    assert "npo_grin" in report and (out / "pareto_npo.png").stat().st_size > 0
    noise_rows = [line for line in report.split("## Does the noise")[1].splitlines() if line.startswith("| npo_grin | ")]
    assert len(noise_rows) == 2  # the noise table: one row per masked trial, none for the unmasked method
    for trial in state["methods"]["npo_grin"]["trials"]:
        gradient = json.loads((out / trial["dir"] / "noise.json").read_text())["forget_gradient"]
        ratio = gradient["after_noise"]["l2"] / gradient["before_noise"]["l2"]
        assert gradient["l2_ratio"] == pytest.approx(ratio)
        assert any(f"| {trial['number']} |" in row and f"| {ratio:.3g} |" in row for row in noise_rows)

    # Resume: nothing is rerun; the trials and the choice come back from the storage unchanged.
    before = {p: p.stat().st_mtime_ns for p in out.glob("trials/*/*/eval.json")}
    assert main(args) == 0
    again = json.loads((out / "tune.json").read_text())
    timing = ("seconds", "cpu_seconds", "reused")
    untimed = lambda methods: {n: {**e, "finals": [{k: v for k, v in f.items() if k not in timing}  # noqa: E731
                                                   for f in e["finals"]]} for n, e in methods.items()}
    assert untimed(again["methods"]) == untimed(state["methods"])  # trials, choice and results unchanged
    assert all(f["reused"] for e in again["methods"].values() for f in e["finals"])
    assert {p: p.stat().st_mtime_ns for p in out.glob("trials/*/*/eval.json")} == before
    assert len(again["invocations"]) == 2
    # A file that changes what a stored trial means (here the base config) is refused, nothing written.
    import yaml
    changed = yaml.safe_load((CONFIGS / "micro_test.yaml").read_text())
    changed["base"]["train"]["epochs"] = 2
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    assert main(["tune", str(tmp_path / "changed.yaml"), "--out", str(out), "--cache-dir", str(cache)]) == 2
    assert json.loads((out / "tune.json").read_text()) == again

    # Auto p against a one-value grid around the chosen GRIN config: each variant uses the p it reports.
    assert main(args + ["--report-only", "--compare-auto", "npo_grin", "--grid-ratios", "0.5", "--no-auto-noise"]) == 0
    compared = json.loads((out / "auto_npo_grin.json").read_text())
    rows = {r["variant"]: r for r in compared["rows"]}
    assert set(rows) == {f"tuned (p = {state['methods']['npo_grin']['chosen']['params']['selection.ratio']:.3g})",
                         "auto p (coverage)", "auto p (balance)", "p = 0.5"}
    assert rows["p = 0.5"]["ratio_used"] == 0.5 and compared["best_grid"] == "p = 0.5"
    for rule in ("coverage", "balance"):
        for cell in rows[f"auto p ({rule})"]["cells"]:
            saved = json.loads((out / cell["dir"] / "config.json").read_text())
            assert saved["config"]["selection"]["ratio"] == saved["auto"]["ratio"]["ratio"] == cell["ratio_used"] < 1
            assert saved["auto"]["ratio"]["method"].startswith(rule)
    assert (out / "auto_npo_grin.md").is_file()
    # Without the balance rule: its row is gone, the others are the same cells (reused, not rerun).
    assert main(args + ["--report-only", "--compare-auto", "npo_grin", "--grid-ratios", "0.5", "--no-auto-noise",
                        "--no-balance-rule"]) == 0
    fewer = {r["variant"]: r for r in json.loads((out / "auto_npo_grin.json").read_text())["rows"]}
    assert set(fewer) == set(rows) - {"auto p (balance)"}
    assert [c["dir"] for c in fewer["p = 0.5"]["cells"]] == [c["dir"] for c in rows["p = 0.5"]["cells"]]
    # The grid is judged by the rule as the tuner resolved it (relative bounds as numbers), not as written:
    # a resolved bound no row meets sends the choice to the fallback.
    stored = json.loads((out / "tune.json").read_text())
    stored["resolved"]["rule"]["subject_to"] = {"forget_quality": {"min": 2.0}}
    (out / "tune.json").write_text(json.dumps(stored))
    assert main(args + ["--report-only", "--compare-auto", "npo_grin", "--grid-ratios", "0.5", "--no-auto-noise",
                        "--no-balance-rule"]) == 0
    assert json.loads((out / "auto_npo_grin.json").read_text())["best_grid_reason"].startswith(
        "no trial met forget_quality ≥ 2.0: fallback")


def test_bounds_relative_to_the_target_resolve_to_numbers():
    from grin_unlearn.experiments.tune_spec import resolve_rule

    spec = parse_tune_spec({"space": {"train.lr": {"low": 1e-4, "high": 1e-2}},
                            "select": {"maximize": "forget_quality",
                                       "subject_to": {"model_utility": {"min_of_target": 0.95},
                                                      "forget_keyword_accuracy": {"max": 0.1}},
                                       "fallback": "model_utility"}}, "t.yaml")
    rule = resolve_rule(spec.rule, {"model_utility": 0.6, "forget_keyword_accuracy": 0.7})
    assert rule["subject_to"] == {"model_utility": {"min": pytest.approx(0.57)}, "forget_keyword_accuracy": {"max": 0.1}}
    rows = [_row(0, 0.9, 0.56, forget_keyword_accuracy=0.0), _row(1, 0.4, 0.58, forget_keyword_accuracy=0.0),
            _row(2, 0.3, 0.70, forget_keyword_accuracy=0.05)]
    assert select_trial(rows, rule)[0]["number"] == 1  # trial 0 forgets best but keeps < 0.95× the target's utility
    with pytest.raises(UserInputError, match="target's model_utility"):
        resolve_rule(spec.rule, {"forget_keyword_accuracy": 0.7})
    with pytest.raises(UserInputError, match="min_of_target"):
        parse_tune_spec({"space": {"train.lr": {"low": 1e-4, "high": 1e-2}},
                         "select": {"maximize": "forget_quality", "subject_to": {"model_utility": {"above": 1}}}})
