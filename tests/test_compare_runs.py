"""scripts/compare_runs.py: the check that a refactor leaves a run's results as they were."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import torch

from grin_unlearn.masks import save_mask

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_runs.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_timings_are_ignored_and_a_changed_value_bit_or_key_order_is_reported(tmp_path, capsys):
    compare = load_script()
    old, new = tmp_path / "old", tmp_path / "new"
    mask = {"layer.weight": torch.tensor([[True, False], [False, True]])}
    save_mask(old / "run" / "mask.safetensors", mask, {"ratio": 0.5})
    result = {"sets": {"forget": {"metrics": {"rouge_l_recall": 0.25, "truth_ratio": 0.5}}}, "timing": {"seconds": 3.0}}
    (old / "run" / "eval.json").write_text(json.dumps(result))
    shutil.copytree(old, new)
    (new / "run" / "eval.json").write_text(json.dumps({**result, "timing": {"seconds": 9.0}}))
    assert compare.main([str(old), str(new)]) == 0

    metrics = result["sets"]["forget"]["metrics"]
    reordered = {"sets": {"forget": {"metrics": {"truth_ratio": 0.5, "rouge_l_recall": 0.25}}}}
    (new / "run" / "eval.json").write_text(json.dumps(reordered))
    assert compare.main([str(old), str(new)]) == 1
    assert "run/eval.json: same values, DIFFERENT key order" in capsys.readouterr().out

    (new / "run" / "eval.json").write_text(json.dumps({"sets": {"forget": {"metrics": {**metrics, "truth_ratio": 0.6}}}}))
    save_mask(new / "run" / "mask.safetensors", {"layer.weight": ~mask["layer.weight"]}, {"ratio": 0.5})
    assert compare.main([str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "run/eval.json: DIFFERENT values" in out and "run/mask.safetensors: DIFFERENT tensors" in out

    (new / "run" / "mask.safetensors").unlink()
    assert compare.main([str(old), str(new)]) == 1
    assert "run/mask.safetensors: MISSING under NEW" in capsys.readouterr().out
    assert compare.main([str(old), str(tmp_path / "absent")]) == 2
