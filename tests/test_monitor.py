"""Evaluation during training: the trajectory's points, the stopping rule stops at the first step that
meets it, and bad rules are refused by name."""

from __future__ import annotations

import json

import pytest

from grin_unlearn.config import MonitorConfig, NoiseConfig, SelectionConfig, TrainConfig, UnlearnConfig, config_from_mapping
from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.errors import UserInputError
from grin_unlearn.pipeline import unlearn
from grin_unlearn.training.stop_rule import parse_stop_rule, rule_holds

FMT = PromptFormat(style="split", max_length=64)


def _config(monitor: MonitorConfig, epochs=3) -> UnlearnConfig:
    return UnlearnConfig(objective="graddiff", selection=SelectionConfig(scorer="none"), noise=NoiseConfig(noise_var=0.0),
                         train=TrainConfig(epochs=epochs, lr=3e-2, batch_size=4, warmup_ratio=0.0), monitor=monitor)


def test_stop_rule_parses_and_holds_only_when_every_condition_does():
    rule = parse_stop_rule(["forget_keyword_accuracy<=0.1", "model_utility >= 0.5"])
    assert [str(c) for c in rule] == ["forget_keyword_accuracy<=0.1", "model_utility>=0.5"]
    assert rule_holds(rule, {"forget_keyword_accuracy": 0.1, "model_utility": 0.5})
    assert not rule_holds(rule, {"forget_keyword_accuracy": 0.05, "model_utility": 0.49})
    assert not rule_holds(rule, {"forget_keyword_accuracy": 0.05})  # a missing metric fails its condition
    assert not rule_holds([], {"model_utility": 1.0})  # no rule never stops


@pytest.mark.parametrize("conditions, message", [
    (["forget_quality>=0.5"], "unknown metric"),
    (["model_utility=0.5"], "METRIC<=NUMBER"),
    (["model_utility>=lots"], "METRIC<=NUMBER"),
])
def test_bad_stop_rules_name_the_condition(conditions, message):
    with pytest.raises(UserInputError, match=message):
        MonitorConfig(eval_every=1, stop_when=conditions)


def test_stop_rule_needs_evaluations_and_is_recorded_in_the_config():
    with pytest.raises(UserInputError, match="--eval-every"):
        MonitorConfig(stop_when=["model_utility<=0.2"])
    config = config_from_mapping({"monitor": {"eval_every": 2, "stop_when": ["model_utility <= 0.2"]}})
    assert config.to_dict()["monitor"] == {"eval_every": 2, "eval_max_items": 40, "stop_when": ["model_utility<=0.2"]}


def test_trajectory_points_every_n_steps(micro_world, micro_tokenizer, micro_model, tmp_path):
    forget, retain = micro_world["forget10"][:8], micro_world["retain90"][:8]
    unlearn(micro_model, micro_tokenizer, forget, retain, _config(MonitorConfig(eval_every=2, eval_max_items=4)),
            tmp_path / "run", fmt=FMT, log=lambda *_: None)
    record = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    assert [p["step"] for p in record["points"]] == [0, 2, 4, 6]  # 2 steps an epoch, 3 epochs
    assert record["stopped_at_step"] is None and (tmp_path / "run" / "trajectory.png").is_file()
    run = json.loads((tmp_path / "run" / "config.json").read_text())
    assert run["config"]["monitor"]["eval_every"] == 2
    # Gradient difference at this lr drives the forget answers' probability down along the way.
    probabilities = [p["forget_probability"] for p in record["points"]]
    assert probabilities[-1] < probabilities[0]


def test_stop_rule_stops_at_the_first_step_that_meets_it(micro_world, micro_tokenizer, micro_model, tmp_path):
    from grin_unlearn.models import build_tiny_model
    from tests.conftest import MICRO_MODEL

    forget, retain = micro_world["forget10"][:8], micro_world["retain90"][:8]
    # A run without a rule gives the (deterministic) trajectory; the threshold lies inside its range.
    free = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
    unlearn(free, micro_tokenizer, forget, retain, _config(MonitorConfig(eval_every=1, eval_max_items=4)),
            tmp_path / "free", fmt=FMT, log=lambda *_: None)
    points = json.loads((tmp_path / "free" / "trajectory.json").read_text())["points"]
    values = [p["forget_probability"] for p in points]
    threshold = (values[0] + min(values)) / 2
    first = next(p["step"] for p, v in zip(points, values) if v <= threshold)
    assert 0 < first < points[-1]["step"]  # the rule must cut the run short to test anything
    monitor = MonitorConfig(eval_every=1, eval_max_items=4, stop_when=[f"forget_probability<={threshold!r}"])
    unlearn(micro_model, micro_tokenizer, forget, retain, _config(monitor), tmp_path / "run", fmt=FMT,
            log=lambda *_: None)
    record = json.loads((tmp_path / "run" / "trajectory.json").read_text())
    assert record["stopped_at_step"] == first and [p["step"] for p in record["points"]] == list(range(first + 1))
    assert [p["forget_probability"] for p in record["points"]] == pytest.approx(values[:first + 1])


def test_sweep_and_tuner_files_take_the_rule_for_every_trial():
    from grin_unlearn.experiments.sweep_spec import expand_grid, parse_spec

    spec = parse_spec({"base": {"objective": "npo", "monitor": {"eval_every": 5, "stop_when": ["model_utility<=0.2"]}},
                       "grid": {"train.lr": [1e-3, 1e-2]}}, "fail_fast.yaml")
    assert all(c.config.monitor.stop_when == ["model_utility<=0.2"] for c in expand_grid(spec))
    with pytest.raises(UserInputError, match="unknown metric"):
        parse_spec({"base": {"monitor": {"eval_every": 5, "stop_when": ["forget_quality>=0.5"]}}}, "bad.yaml")


def test_raw_text_runs_are_refused_before_any_work(micro_world, micro_tokenizer, micro_model, tmp_path):
    texts = [{"text": r["question"] + " " + r["answer"]} for r in micro_world["forget10"][:4]]
    with pytest.raises(UserInputError, match="--eval-every"):
        unlearn(micro_model, micro_tokenizer, texts, micro_world["retain90"][:4],
                _config(MonitorConfig(eval_every=1)), tmp_path / "run", fmt=FMT, log=lambda *_: None)
    assert not (tmp_path / "run").exists()  # nothing written
