"""Configs: per-objective defaults, and flags over YAML over the objective's defaults."""

from __future__ import annotations

import argparse

import pytest

from grin_unlearn.commands import unlearn as unlearn_command
from grin_unlearn.config import TrainConfig, UnlearnConfig, config_from_mapping
from grin_unlearn.errors import UserInputError
from grin_unlearn.training.objectives import ObjectiveHyperparams


def _resolve(argv: list[str]) -> UnlearnConfig:
    parser = argparse.ArgumentParser()
    unlearn_command.add_arguments(parser)
    return unlearn_command.resolve_config(parser.parse_args(["--model", "m", "--out", "o", *argv]))


def test_each_objective_gets_its_own_defaults_from_the_command_line():
    simnpo = _resolve(["--objective", "simnpo"])
    assert (simnpo.hyperparams.beta, simnpo.hyperparams.gamma, simnpo.hyperparams.alpha) == (4.5, 0.125, 1.0)
    assert (simnpo.train.lr, simnpo.train.epochs) == (1e-5, 10)
    npo = _resolve([])  # npo is the default objective
    assert (npo.objective, npo.hyperparams.beta, npo.hyperparams.gamma) == ("npo", 0.1, 1.0)


def test_a_flag_overrides_only_its_own_default():
    config = _resolve(["--objective", "simnpo", "--beta", "2.5", "--lr", "3e-4"])
    assert (config.hyperparams.beta, config.hyperparams.gamma, config.train.lr, config.train.epochs) == (
        2.5, 0.125, 3e-4, 10)


def test_objective_flag_over_a_yaml_file_takes_the_new_objectives_defaults(tmp_path):
    """The file says npo and sets α; --objective simnpo keeps the file's α but SimNPO's β and γ."""
    path = tmp_path / "run.yaml"
    path.write_text("objective: npo\nhyperparams: {alpha: 5}\ntrain: {epochs: 3}\n")
    config = _resolve(["--config", str(path), "--objective", "simnpo"])
    assert config.objective == "simnpo"
    assert (config.hyperparams.beta, config.hyperparams.gamma, config.hyperparams.alpha) == (4.5, 0.125, 5.0)
    assert (config.train.epochs, config.train.lr) == (3, 1e-5)
    flagged = _resolve(["--config", str(path), "--alpha", "2"])
    assert (flagged.objective, flagged.hyperparams.alpha, flagged.hyperparams.beta) == ("npo", 2.0, 0.1)


def test_yaml_and_python_configs_resolve_the_same_way():
    from_yaml = config_from_mapping({"objective": "idkdpo", "train": {"batch_size": 8}})
    in_python = UnlearnConfig("idkdpo", train=TrainConfig(batch_size=8))
    assert from_yaml.to_dict() == in_python.to_dict()
    assert in_python.hyperparams == ObjectiveHyperparams(beta=0.1, delta=0.0, gamma=1.0, alpha=1.0, retain_loss="nll")


def test_building_a_config_does_not_modify_the_given_sections():
    hyperparams, train = ObjectiveHyperparams(), TrainConfig()
    UnlearnConfig("simnpo", hyperparams=hyperparams, train=train)
    assert hyperparams.beta is None and train.lr is None


@pytest.mark.parametrize("argv", [["--lr", "0"], ["--epochs", "-1"], ["--beta", "0"]])
def test_bad_values_are_still_refused(argv):
    with pytest.raises(UserInputError):
        _resolve(argv)
