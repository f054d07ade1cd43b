"""Same config + seed on CPU → bit-identical mask, noise and final weights; every run records its setup."""

from __future__ import annotations

import importlib
import json

import torch
from safetensors.torch import load_file

from grin_unlearn.cli import main
from grin_unlearn.masks import load_mask

pipeline = importlib.import_module("grin_unlearn.pipeline")  # the package re-exports a function of that name

CONFIG = """\
# grin-unlearn unlearn --config this.yaml ...
objective: npo
selection: {scorer: grin, ratio: 0.2, score_batch_size: 16}
noise: {noise_var: 0.001}
train: {epochs: 1, batch_size: 4, seed: 7, max_length: 48}
"""


def _run(tmp_path, name, model_dir, world_dir):
    out = tmp_path / name
    assert main(["unlearn", "--model", str(model_dir), "--data", str(world_dir), "--forget", "forget10",
                 "--retain", "retain90", "--config", str(tmp_path / "grin.yaml"), "--out", str(out)]) == 0
    return out


def _bits(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().view(-1).view(torch.uint8)


def test_same_seed_same_mask_noise_and_weights(tmp_path, micro_model_dir, micro_world_dir, monkeypatch):
    (tmp_path / "grin.yaml").write_text(CONFIG)
    noised: list[dict] = []

    def recording_noise(params, masks, *args, **kwargs):
        result = inject_noise(params, masks, *args, **kwargs)
        noised.append({name: p.detach().clone() for name, p in params.items()})
        return result

    inject_noise = pipeline.inject_noise
    monkeypatch.setattr(pipeline, "inject_noise", recording_noise)
    first = _run(tmp_path, "a", micro_model_dir, micro_world_dir)
    second = _run(tmp_path, "b", micro_model_dir, micro_world_dir)

    (mask_a, meta_a), (mask_b, meta_b) = load_mask(first / "mask.safetensors"), load_mask(second / "mask.safetensors")
    assert list(mask_a) == list(mask_b) and all(mask_a[k].equal(mask_b[k]) for k in mask_a)
    assert any(m.any() for m in mask_a.values()) and meta_a["config"] == meta_b["config"]
    assert len(noised) == 2 and noised[0].keys() == noised[1].keys()
    assert all(_bits(noised[0][k]).equal(_bits(noised[1][k])) for k in noised[0])
    weights_a = load_file(str(first / "model" / "model.safetensors"))
    weights_b = load_file(str(second / "model" / "model.safetensors"))
    assert weights_a.keys() == weights_b.keys()
    assert all(_bits(weights_a[k]).equal(_bits(weights_b[k])) for k in weights_a)


def test_run_folder_records_resolved_config_and_environment(tmp_path, micro_model_dir, micro_world_dir):
    out = tmp_path / "run"
    assert main(["unlearn", "--model", str(micro_model_dir), "--data", str(micro_world_dir), "--forget", "forget10",
                 "--retain", "retain90", "--out", str(out), "--scorer", "none", "--epochs", "1",
                 "--batch-size", "16", "--seed", "3", "--max-length", "48"]) == 0
    saved = json.loads((out / "config.json").read_text())
    config = saved["config"]
    assert config["objective"] == "npo" and config["selection"]["scorer"] == "none"
    assert config["train"]["seed"] == 3 and config["noise"]["noise_var"] == 1e-3  # defaults resolved too
    import transformers

    env = saved["environment"]
    assert env["torch"] == torch.__version__ and env["transformers"] == transformers.__version__
    assert {"grin_unlearn", "accelerate", "python", "platform"} <= env.keys()
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
