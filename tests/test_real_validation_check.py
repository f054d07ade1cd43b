"""scripts/real_validation_check.py and the table rows it shares with scripts/real_ablation_tables.py."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str):
    sys.path.insert(0, str(SCRIPTS))  # the script imports its neighbour as the interpreter would
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


def test_only_the_scorer_and_p_change_from_grins_tuned_config(tmp_path):
    check = load("real_validation_check")
    chosen = {"train.lr": 4.97e-5, "train.epochs": 6, "selection.ratio": 0.5999, "noise.noise_var": 1e-5}
    (tmp_path / "tune.json").write_text(json.dumps({"methods": {"npo_grin": {"chosen": {"params": chosen}}}}))
    cells = check.cells(tmp_path, [0.2, 0.6])
    assert sorted(cells) == ["grin, p 0.2", "grin, p 0.6", "random, p 0.2", "random, p 0.6"]
    for label, (method, params, folder) in cells.items():
        scorer, ratio = label.split(", p ")
        assert (method.objective, method.scorer) == ("npo", scorer)
        assert params == {**chosen, "selection.ratio": float(ratio)}
        assert folder.parent == tmp_path / "validation_check" / f"npo_{scorer}"
    # the same params under two scorers share a hash, so each (scorer, p) has its own folder
    assert len({folder for _, _, folder in cells.values()}) == 4


def test_a_row_is_the_mean_and_sample_std_over_finished_seeds(tmp_path):
    tables = load("real_ablation_tables")
    values = [0.77, 0.27, None]  # the third seed has not finished: no eval.json
    for k, quality in enumerate(values[:2]):
        aggregates = {key: quality if key == "forget_quality" else 0.5 + k / 10 for key, _ in tables.METRICS}
        (tmp_path / f"seed{k}").mkdir()
        (tmp_path / f"seed{k}" / "eval.json").write_text(json.dumps({"aggregates": aggregates}))
    (tmp_path / "seed2").mkdir()
    cells = tables.row("GRIN", sorted(tmp_path.glob("seed*"))).split(" | ")
    assert cells[0] == "| GRIN (n=2)"
    assert cells[1] == f"{statistics.fmean([0.77, 0.27]):.3f} ± {statistics.stdev([0.77, 0.27]):.3f}" == "0.520 ± 0.354"
    assert cells[2] == "0.550 ± 0.071" and cells[-1] == "0.77 / 0.27 |"
    oracle = tmp_path / "oracle"
    oracle.mkdir()
    (oracle / "eval.json").write_text(json.dumps({"aggregates": {key: None if key == "forget_quality" else 0.6
                                                                  for key, _ in tables.METRICS}}))
    assert tables.row("oracle", [oracle]).split(" | ")[1:3] == ["–", "0.600"]
    assert tables.row("nothing", [tmp_path / "seed2"]) is None
