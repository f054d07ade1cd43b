"""A cell folder is reused only for the model, data and splits it was made from."""

from __future__ import annotations

import json

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.experiments.runs import SOURCE_FILE, cell_source, check_source
from grin_unlearn.run_dir import EVAL_FILE, FINISHED_FILE


def test_a_cell_folder_of_another_target_is_refused_and_the_same_one_reused(tmp_path):
    cell = tmp_path / "cell"
    cell.mkdir()
    ours = cell_source(tmp_path / "target-a", tmp_path / "world", "forget10", "retain90")
    check_source(cell, ours)  # a new folder: recorded
    assert json.loads((cell / SOURCE_FILE).read_text()) == ours
    (cell / FINISHED_FILE).write_text("{}")
    (cell / EVAL_FILE).write_text("{}")
    check_source(cell, ours)  # the same source: reusable
    for other in (cell_source(tmp_path / "target-b", tmp_path / "world", "forget10", "retain90"),
                  cell_source(tmp_path / "target-a", tmp_path / "world", "forget05", "retain95")):
        with pytest.raises(UserInputError, match="target-a"):
            check_source(cell, other)


def test_a_finished_cell_without_a_record_is_refused(tmp_path):
    cell = tmp_path / "old"
    cell.mkdir()
    (cell / FINISHED_FILE).write_text("{}")
    with pytest.raises(UserInputError, match="no record"):
        check_source(cell, cell_source(tmp_path / "target", "locuslab/TOFU", "forget10", "retain90"))
    assert not (cell / SOURCE_FILE).exists()


def test_hub_ids_are_recorded_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cell_source("org/model", "locuslab/TOFU", "forget10", "retain90")["data"] == "locuslab/TOFU"
