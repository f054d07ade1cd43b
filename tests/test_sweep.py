"""Sweeps: grid expansion (names, counts, exclude_redundant, input errors) and a resumable micro sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grin_unlearn.cli import main
from grin_unlearn.errors import UserInputError
from grin_unlearn.experiments.aggregate import write_sweep_report
from grin_unlearn.experiments.sweep import run_sweep
from grin_unlearn.experiments.sweep_spec import expand_grid, load_spec, parse_spec

MICRO = Path(__file__).resolve().parents[1] / "configs" / "micro_test.yaml"
CONFIGS = sorted(MICRO.parent.glob("*.yaml"))


def _grid_spec(exclude_redundant: bool) -> dict:
    return {"base": {"objective": "npo", "train": {"epochs": 1}},
            "grid": {"objective": ["npo", "po"], "selection.scorer": ["none", "grin"],
                     "selection.ratio": [0.2, 0.4], "noise.noise_var": [0, "1e-3"], "train.seed": [0, 1]},
            "exclude_redundant": exclude_redundant}


def test_expand_grid_counts_and_names():
    cells = expand_grid(_grid_spec(False))
    assert len(cells) == 2 * 2 * 2 * 2 * 2
    names = [c.name for c in cells]
    assert len(set(names)) == len(names)
    assert names[0] == "npo_none_p0.2_s0_seed0"
    assert "po_grin_p0.4_s1e-03_seed1" in names
    cell = cells[names.index("po_grin_p0.4_s1e-03_seed1")]
    assert cell.config.objective == "po" and cell.config.selection.ratio == 0.4
    assert cell.config.noise.noise_var == 1e-3  # the YAML string "1e-3" became a float
    assert cell.config.train.seed == 1 and cell.config.train.epochs == 1  # base kept


def test_expand_grid_exclude_redundant_runs_full_finetune_once_per_objective_and_seed():
    cells = expand_grid(_grid_spec(True))
    # grin: 2 objectives x 2 ratios x 2 noises x 2 seeds = 16; none: 2 objectives x 2 seeds = 4
    assert len(cells) == 20
    full = [c for c in cells if c.config.selection.scorer == "none"]
    assert [c.name for c in full] == ["npo_none_seed0", "npo_none_seed1", "po_none_seed0", "po_none_seed1"]
    assert full[0].values == {"objective": "npo", "selection.scorer": "none", "selection.ratio": None,
                              "noise.noise_var": None, "train.seed": 0}
    assert all(c.config.noise.noise_var == 0.0 for c in full)


def test_cell_names_start_with_the_base_objective_and_scorer():
    cells = expand_grid({"base": {"objective": "po"}, "grid": {"train.seed": [0, 1, 2]}})
    assert [c.name for c in cells] == ["po_grin_seed0", "po_grin_seed1", "po_grin_seed2"]
    assert [c.name for c in expand_grid({})] == ["npo_grin"]


@pytest.mark.parametrize("spec, named", [
    ({"grid": {"selection.bogus": [1]}}, "selection.bogus"),
    ({"grid": {"optimizer.lr": [1]}}, "optimizer.lr"),
    ({"grid": {"selection.ratio": [1.5]}}, "selection.ratio"),
    ({"grid": {"selection.ratio": "0.4"}}, "selection.ratio"),
    ({"grid": {"selection.ratio": [0.4, 0.4]}}, "selection.ratio"),
    ({"grid": {"selection.scorer": ["grin", "oracle"]}}, "selection.scorer"),
    ({"grid": {"noise.noise_var": ["lots"]}}, "noise.noise_var"),
    ({"grid": {"objective": ["npo", "nope"]}}, "objective"),
    ({"base": {"train": {"lrate": 1}}}, "lrate"),
    ({"embedded": {"authors": 10, "size": 3}}, "size"),
    ({"embedded": {"model": {"hidden": 3}}}, "hidden"),
    ({"eval": {"max_items": 0}}, "max-items"),
    ({"sweeps": 3}, "sweeps"),
    ({"data": "somewhere"}, "model"),
    ({"model": "m", "data": "d", "embedded": {}}, "embedded"),
    ({"model": "m"}, "data"),
    ({"model": "m", "data": "d", "oracle": "o", "oracle_eval": "o.json"}, "oracle"),
])
def test_bad_specs_raise_naming_the_key(spec, named):
    with pytest.raises(UserInputError, match=named.replace(".", r"\.")):
        expand_grid(parse_spec(spec, "bad.yaml"))


def test_user_model_and_data_spec():
    spec = parse_spec({"model": "my/model", "data": "my/data", "forget": "forget05", "retain": "retain95",
                       "oracle_eval": "oracle/eval.json", "eval": {"max_items": 8}}, "mine.yaml")
    assert spec.embedded is None and (spec.model, spec.data) == ("my/model", "my/data")
    assert (spec.forget, spec.retain, spec.oracle_eval) == ("forget05", "retain95", "oracle/eval.json")
    assert spec.eval.max_items == 8
    embedded = parse_spec({"embedded": {"authors": 12, "model": {"hidden_size": 32, "num_attention_heads": 2},
                                        "finetune": {"epochs": 2}}}).embedded
    assert embedded.authors == 12 and embedded.model.hidden_size == 32 and embedded.finetune.epochs == 2


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_parse(path):
    assert "grin-unlearn sweep configs/" in path.read_text().splitlines()[0]
    cells = expand_grid(load_spec(path))
    expected = {"ablation_ratio.yaml": 12, "ablation_noise.yaml": 12, "baselines.yaml": 54, "micro_test.yaml": 2,
                "objectives.yaml": 12, "npo_retain_tries.yaml": 18, "npo_tuned_seeds.yaml": 9,
                "real_ablation_noise.yaml": 12, "real_random_p_grid.yaml": 6, "real_precision_verdict.yaml": 6,
                "real_none_chosen.yaml": 3, "real_random_matched.yaml": 3}
    assert len(cells) == expected[path.name]


def test_dry_run_lists_cells(tmp_path, capsys):
    assert main(["sweep", str(MICRO), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[1/2] graddiff_none_seed0" in out and "[2/2] graddiff_grin_seed0" in out
    assert not (tmp_path / "out").exists()
    assert main(["report", str(tmp_path / "nowhere")]) == 2


def test_micro_sweep_runs_then_resumes_only_the_crashed_cell(tmp_path):
    out, cache = tmp_path / "sweep", tmp_path / "cache"
    logs: list[str] = []
    entries = run_sweep(MICRO, out, cache, log=lambda message, **_: logs.append(message))
    assert [e["status"] for e in entries] == ["ran", "ran"]
    state = json.loads((out / "sweep.json").read_text())
    assert state["status"] == "finished" and [c["name"] for c in state["cells"]] == [e["name"] for e in entries]
    assert (out / "target" / "eval.json").is_file() and (out / "oracle" / "eval.json").is_file()
    first, second = (out / "cells" / e["name"] for e in entries)
    assert (second / "density.json").is_file() and not (first / "density.json").exists()

    # A crash in the second cell: its run.json and eval.json were never written.
    first_mtime = (first / "eval.json").stat().st_mtime_ns
    (second / "run.json").unlink()
    (second / "eval.json").unlink()
    logs.clear()
    entries = run_sweep(MICRO, out, cache, log=lambda message, **_: logs.append(message))
    assert [e["status"] for e in entries] == ["reused", "ran"]
    assert "[1/2] graddiff_none_seed0 (reused)" in logs
    assert any(line.startswith("[2/2] graddiff_grin_seed0 (ran in ") for line in logs)
    assert (first / "eval.json").stat().st_mtime_ns == first_mtime
    assert (second / "run.json").is_file() and (second / "eval.json").is_file()

    text = write_sweep_report(out).read_text()
    assert "| none |" in text and "| grin |" in text and "| **target** |" in text
    assert (out / "quality_utility.png").is_file() and (out / "density.png").is_file()

    # A folder written before a config field existed (here the auto-ratio fields) is still reused:
    # the missing fields hold their defaults.
    spec_file = second / "cell_spec.json"
    saved = json.loads(spec_file.read_text())
    for key in ("auto_rule", "auto_share"):
        del saved["config"]["selection"][key]
    spec_file.write_text(json.dumps(saved))
    assert [e["status"] for e in run_sweep(MICRO, out, cache, log=lambda *a, **k: None)] == ["reused", "reused"]

    # The same cell name with another config must not be reused.
    changed = tmp_path / "changed.yaml"
    changed.write_text(MICRO.read_text().replace("lr: 2.0e-3", "lr: 5.0e-3"))
    with pytest.raises(UserInputError, match="train.lr"):
        run_sweep(changed, out, cache, log=lambda *a, **k: None)


def test_real_benchmark_spec_keeps_the_recipe_under_partial_overrides():
    from grin_unlearn.experiments.real_benchmark import DEFAULT_REAL, REAL_FINETUNE
    from grin_unlearn.experiments.sweep import with_target_seed

    assert parse_spec({"real": {}}).real == DEFAULT_REAL  # the cached benchmark, not another one
    spec = parse_spec({"real": {"authors": 12, "finetune": {"epochs": 3}}, "precision": "bf16"}, "real.yaml")
    assert spec.benchmark is spec.real and spec.benchmark_key == "real" and spec.precision == "bf16"
    # a given finetune field replaces the recipe's, the others stay the recipe's (not the class defaults)
    assert spec.real.finetune.epochs == 3 and spec.real.authors == 12
    assert (spec.real.finetune.learning_rate, spec.real.finetune.precision) == (REAL_FINETUNE.learning_rate, "bf16")
    seeded = with_target_seed(spec, 4)
    assert seeded.real.finetune.seed == 4 and seeded.real.finetune.epochs == 3
    assert seeded.raw["real"]["finetune"] == {"epochs": 3, "seed": 4}
    assert parse_spec({}).precision == "fp32" and parse_spec({}).benchmark_key == "embedded"


@pytest.mark.parametrize("spec, named", [
    ({"real": {}, "embedded": {}}, "not both"),
    ({"real": {"layers": 3}}, "layers"),
    ({"real": {"finetune": {"lr": 1}}}, r"real\.finetune"),
    ({"real": {"forget_split": "forget50"}}, "forget50"),
    ({"real": {}, "model": "m", "data": "d"}, "'real' or 'model'"),
    ({"precision": "fp16"}, "precision"),
])
def test_bad_real_specs_raise_naming_the_key(spec, named):
    with pytest.raises(UserInputError, match=named):
        parse_spec(spec, "bad.yaml")


def test_precision_reaches_the_evaluation(micro_model_dir, micro_world_dir, tmp_path):
    """A sweep's ``precision`` runs the cell's evaluation under it: bf16 moves the numbers a little."""
    from grin_unlearn.evaluation import EvalConfig, default_roles
    from grin_unlearn.experiments.runs import evaluate_model_dir

    roles = default_roles(micro_world_dir, "forget10", "retain90")
    config = EvalConfig(max_items=4, max_new_tokens=4, mia=False)
    results = {p: evaluate_model_dir(micro_model_dir, micro_world_dir, roles, tmp_path / f"{p}.json", config,
                                     precision=p) for p in ("fp32", "bf16")}
    probs = {p: r["sets"]["forget10"]["per_item"]["answer_loss"] for p, r in results.items()}
    assert probs["fp32"] != probs["bf16"]
    assert probs["fp32"] == pytest.approx(probs["bf16"], rel=0.1)
