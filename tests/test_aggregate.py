"""Seed aggregation and the sweep report, on hand-written cell folders with known numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.experiments.aggregate import aggregate_cells, average_density, mean_std, write_sweep_report
from grin_unlearn.experiments.report import report_columns
from grin_unlearn.experiments.sweep_spec import expand_grid

SPEC = {"base": {"objective": "po", "noise": {"noise_var": 1.0e-3}},
        "grid": {"selection.scorer": ["none", "grin"], "selection.ratio": [0.2, 0.4],
                 "noise.noise_var": [0.0, 1.0e-3], "train.seed": [0, 1, 2]},
        "exclude_redundant": True}
# The configuration the test checks by hand: grin, p = 0.4, σ² = 1e-3, seeds 0, 1, 2.
KNOWN = {"forget_rouge_l": [0.2, 0.4, 0.6], "model_utility": [0.5, 0.5, 0.5], "forget_quality": [0.1, None, 0.3],
         "seconds": [10.0, 20.0, 30.0]}


def _aggregates(**values) -> dict:
    aggregates = {key: 0.5 for key, _ in report_columns()}
    aggregates.update(values)
    return {"sets": {}, "aggregates": aggregates, "config": {}}


def _density(attention: float, mlp: float) -> dict:
    def stat(density):
        return {"selected": int(density * 100), "total": 100, "density": density}
    return {"overall": stat((attention + mlp) / 2), "by_module": {"q_proj": stat(attention), "up_proj": stat(mlp)},
            "by_group": {"attention": stat(attention), "mlp": stat(mlp)}, "by_layer": {"0": stat(attention)}}


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _fabricate(sweep_dir: Path, unfinished: str | None = None) -> list:
    cells = expand_grid(SPEC)
    entries = []
    for cell in cells:
        seed = cell.values["train.seed"]
        cell_dir = sweep_dir / "cells" / cell.name
        entries.append({"name": cell.name, "dir": f"cells/{cell.name}", "values": cell.values,
                        "status": "ran", "seconds": 1.0})
        if cell.name == unfinished:
            continue  # killed midway: no run.json / eval.json
        if cell.name.startswith("po_grin_p0.4_s1e-03_"):
            metrics = {k: v[seed] for k, v in KNOWN.items() if k != "seconds"}
            seconds = KNOWN["seconds"][seed]
        else:
            metrics = {"forget_rouge_l": 0.1 * (seed + 1), "forget_quality": 0.01 * (seed + 1)}
            seconds = 5.0
        _write(cell_dir / "eval.json", _aggregates(**metrics))
        _write(cell_dir / "run.json", {"status": "finished", "timing": {"total": seconds}})
        _write(cell_dir / "config.json", {"config": cell.config.to_dict()})
        if cell.config.selection.scorer == "grin":
            _write(cell_dir / "density.json", _density(0.2 if seed == 0 else 0.4, 0.6))
    _write(sweep_dir / "target" / "eval.json", _aggregates(forget_rouge_l=0.9, forget_quality=1e-4))
    _write(sweep_dir / "oracle" / "eval.json", _aggregates(forget_rouge_l=0.3, forget_quality=None))
    _write(sweep_dir / "sweep.json", {"spec_path": "configs/fake.yaml", "spec": SPEC, "grid_keys": list(SPEC["grid"]),
                                      "target_eval": "target/eval.json", "oracle_eval": "oracle/eval.json",
                                      "status": "finished", "cells": entries})
    return cells


def test_mean_std_is_the_sample_std():
    """[0.2, 0.4, 0.6]: mean 0.4; sum of squared deviations 0.04 + 0 + 0.04 = 0.08; /(n-1) = 0.04;
    std = 0.2. One value: std 0. None and NaN are skipped; nothing present: (None, None)."""
    mean, std = mean_std([0.2, 0.4, 0.6])
    assert mean == pytest.approx(0.4) and std == pytest.approx(0.2)
    assert mean_std([0.7]) == (0.7, 0.0)
    assert mean_std([0.7, None, math.nan]) == (0.7, 0.0)
    assert mean_std([None]) == (None, None)


def test_aggregate_cells_groups_seeds_with_hand_computed_numbers(tmp_path):
    """Group grin p=0.4 σ²=1e-3 over seeds 0, 1, 2:

    * forget ROUGE-L 0.2, 0.4, 0.6 -> mean 0.4, std sqrt(0.08 / 2) = 0.2;
    * model utility 0.5 three times -> mean 0.5, std 0;
    * forget quality 0.1, missing, 0.3 -> mean over the two present 0.2, std sqrt((0.01 + 0.01) / 1) = 0.1414;
    * seconds 10, 20, 30 -> mean 20, std sqrt((100 + 0 + 100) / 2) = 10; n = 3.
    """
    from grin_unlearn.experiments.aggregate import load_cell_rows, load_sweep_state

    _fabricate(tmp_path)
    rows, unfinished = load_cell_rows(tmp_path, load_sweep_state(tmp_path))
    assert unfinished == [] and len(rows) == 3 + 2 * 2 * 3
    groups = aggregate_cells(rows)
    assert len(groups) == 1 + 2 * 2
    by_label = {g["method"]: g for g in groups}
    group = by_label["grin p=0.4 σ²=0.001"]
    assert group["n"] == 3 and group["seeds"] == [0, 1, 2]
    assert group["forget_rouge_l"] == pytest.approx(0.4) and group["forget_rouge_l_std"] == pytest.approx(0.2)
    assert group["model_utility"] == pytest.approx(0.5) and group["model_utility_std"] == pytest.approx(0.0)
    assert group["forget_quality"] == pytest.approx(0.2)
    assert group["forget_quality_std"] == pytest.approx(math.sqrt(0.02))
    assert group["seconds"] == pytest.approx(20.0) and group["seconds_std"] == pytest.approx(10.0)
    full = by_label["none"]
    assert full["values"] == {"selection.scorer": "none", "selection.ratio": None, "noise.noise_var": None}
    assert full["n"] == 3 and full["forget_rouge_l"] == pytest.approx(0.2)


def test_average_density_averages_each_module():
    """q_proj 0.2 and 0.4 -> 0.3; up_proj 0.6 and 0.6 -> 0.6; overall 0.4 and 0.5 -> 0.45."""
    mean = average_density([_density(0.2, 0.6), _density(0.4, 0.6)])
    assert mean["by_module"]["q_proj"]["density"] == pytest.approx(0.3)
    assert mean["by_module"]["up_proj"]["density"] == pytest.approx(0.6)
    assert mean["overall"]["density"] == pytest.approx(0.45)
    assert mean["by_layer"]["0"]["density"] == pytest.approx(0.3)


def grin_rouge_cell(text: str) -> str:
    """The forget ROUGE-L cell of the row ``grin p=0.4 σ²=0.001`` in a printed sweep table."""
    header, row = ([cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()
                   if line.startswith("| scorer | p | σ² |") or line.startswith("| grin | 0.4 | 0.001 |"))
    return row[header.index("forget ROUGE-L ↓")]


def test_write_sweep_report_writes_table_and_plots(tmp_path):
    _fabricate(tmp_path, unfinished="po_grin_p0.2_s0_seed2")
    report = write_sweep_report(tmp_path)
    text = report.read_text()
    assert report == tmp_path / "report.md"
    assert "| scorer | p | σ² |" in text
    assert grin_rouge_cell(text) == "0.400 ± 0.200"
    assert "| none | – | – |" in text  # a full fine-tune has no p or σ²
    assert "| **target** |" in text and "| **oracle** |" in text
    assert "po_grin_p0.2_s0_seed2" in text and "14 of 15 cells finished" in text
    for name in ("quality_utility.png", "rouge_vs_ratio.png", "rouge_vs_noise.png", "density.png"):
        png = tmp_path / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"({name})" in text


def test_report_without_sweep_json_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="sweep.json"):
        write_sweep_report(tmp_path)


def test_report_command_prints_the_table(tmp_path, capsys):
    from grin_unlearn.cli import main

    _fabricate(tmp_path)
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert grin_rouge_cell(out) == "0.400 ± 0.200" and "report.md" in out


def test_metric_plot_takes_an_auto_value_beside_numbers(tmp_path):
    """A grid over selection.ratio with ``auto`` (configs/tofu/ablation_p.yaml) once crashed the report."""
    from grin_unlearn.experiments.report import plot_metric_vs

    groups = [{"values": {"selection.ratio": r}, "forget_rouge_l": m, "forget_rouge_l_std": 0.01}
              for r, m in ((0.2, 0.5), (0.8, 0.4), ("auto", 0.45))]
    path = plot_metric_vs(groups, "selection.ratio", tmp_path / "p.png")
    assert path.is_file() and path.stat().st_size > 1000
