"""Claims over several targets: `sweep --target-seed` builds another target, `report A B --out` pools them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from grin_unlearn.cli import main
from grin_unlearn.errors import UserInputError
from grin_unlearn.experiments.across_targets import between_target_spread
from grin_unlearn.experiments.sweep import with_target_seed
from grin_unlearn.experiments.sweep_spec import load_spec, parse_spec

MICRO = Path(__file__).resolve().parents[1] / "configs" / "micro_test.yaml"


@pytest.fixture(scope="module")
def two_targets(tmp_path_factory):
    root = tmp_path_factory.mktemp("targets")
    for seed in (0, 1):
        assert main(["sweep", str(MICRO), "--out", str(root / f"t{seed}"), "--cache-dir", str(root / "cache"),
                     "--target-seed", str(seed)]) == 0
    return root


def _cell_value(folder: Path, cell: str, key: str) -> float:
    return json.loads((folder / "cells" / cell / "eval.json").read_text())["aggregates"][key]


def test_target_seed_builds_another_target_and_the_report_pools_both(two_targets, capsys):
    t0, t1 = two_targets / "t0", two_targets / "t1"
    states = [json.loads((t / "sweep.json").read_text()) for t in (t0, t1)]
    assert [s["spec"]["embedded"]["finetune"]["seed"] for s in states] == [0, 1]
    target = [json.loads((t / "target" / "eval.json").read_text())["aggregates"]["model_utility"] for t in (t0, t1)]
    assert target[0] != target[1]  # another training seed, another target
    assert main(["report", str(t0), str(t1), "--out", str(two_targets / "pooled")]) == 0
    report = (two_targets / "pooled" / "report.md").read_text()
    cell = states[0]["cells"][0]["name"]
    values = [_cell_value(t, cell, "model_utility") for t in (t0, t1)]
    mean = sum(values) / 2
    assert f"{mean:.3f} ± {abs(values[0] - values[1]) / math.sqrt(2):.3f}" in report
    assert (two_targets / "pooled" / "quality_utility.png").is_file()


def test_between_target_spread_is_the_std_of_per_target_means():
    rows = [{"values": {"selection.scorer": "grin", "train.seed": s}, "target": t, "forget_quality": v}
            for t, s, v in [(0, 0, 0.1), (0, 1, 0.3), (1, 0, 0.6), (1, 1, 0.8), (2, 0, 0.5), (2, 1, None)]]
    (spread,) = between_target_spread(rows, "forget_quality").values()
    means = [0.2, 0.7, 0.5]  # per target; target 2 has one present value
    mu = sum(means) / 3
    assert spread == pytest.approx(math.sqrt(sum((m - mu) ** 2 for m in means) / 2))


def test_target_seed_needs_the_embedded_benchmark(tmp_path):
    spec = parse_spec({"model": str(tmp_path), "data": str(tmp_path), "base": {"objective": "npo"},
                       "grid": {"train.seed": [0]}})
    with pytest.raises(UserInputError, match="--target-seed"):
        with_target_seed(spec, 1)
    assert with_target_seed(load_spec(MICRO), 3).embedded.finetune.seed == 3


def test_report_across_targets_needs_an_out_folder(two_targets, capsys):
    assert main(["report", str(two_targets / "t0"), str(two_targets / "t1")]) == 2
    assert "--out" in capsys.readouterr().err
