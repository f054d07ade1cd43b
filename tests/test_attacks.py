"""Tests for grin_unlearn.evaluation.attacks: quantization, relearning, the recovery share, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grin_unlearn.evaluation.attacks import (QuantizeConfig, changed_buckets, quantize_model, recovery, recovery_table,
                                             relearn_curve, rtn_dequantized, split_relearn_probe)
from grin_unlearn.evaluation.attacks.quantize import rtn
from grin_unlearn.errors import UserInputError
from grin_unlearn.models import build_tiny_model
from tests.conftest import MICRO_MODEL


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.sampled_from([4, 8, 16]), st.sampled_from([2, 3, 4, 8]), st.sampled_from([None, 4, 8]),
       st.floats(1e-4, 10.0), st.integers(0, 2**31 - 1))
def test_every_weight_lies_within_half_a_step(rows, groups, bits, group_size, spread, seed):
    """RTN moves each weight by at most half its group's step s = (max - min) / (2^b - 1), and uses at most
    2^b levels per group."""
    cols = groups * (group_size or 5)
    weight = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * spread
    out, steps = rtn(weight, bits, group_size)
    size = group_size or cols
    groups_of = weight.reshape(rows, cols // size, size)
    expected = ((groups_of.amax(-1, keepdim=True) - groups_of.amin(-1, keepdim=True)) / (2 ** bits - 1))
    assert torch.allclose(steps, expected.expand_as(groups_of).reshape(rows, cols))  # s = (max - min) / (2^b - 1)
    assert out.dtype == weight.dtype and out.shape == weight.shape
    assert torch.all((out - weight).abs() <= steps / 2 * (1 + 1e-4) + 1e-12)
    for group in out.reshape(rows, cols // size, size).reshape(-1, size):
        assert group.unique().numel() <= 2 ** bits


def test_sixteen_bit_is_bf16_and_constant_groups_stay_exact():
    weight = torch.randn(4, 8)
    assert torch.equal(rtn_dequantized(weight, 16, 4), weight.to(torch.bfloat16).float())
    flat = torch.full((2, 8), 0.3)
    assert torch.equal(rtn_dequantized(flat, 4, 4), flat)
    with pytest.raises(UserInputError, match="group-size 3"):
        rtn_dequantized(weight, 4, 3)
    with pytest.raises(UserInputError, match="--bits"):
        QuantizeConfig(bits=5)


def test_quantized_model_saves_and_loads_as_a_normal_folder(micro_tokenizer, tmp_path):
    from grin_unlearn.models import load_model, save_model_folder

    model = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = quantize_model(model, QuantizeConfig(bits=4, group_size=16))
    assert report["tensors"] == 2 * 7 and report["max_error_in_steps"] <= 0.5 + 1e-4
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".layers." in k and "norm" not in k for k in changed)  # embeddings, head, norms kept
    save_model_folder(model, micro_tokenizer, tmp_path / "q")
    loaded = load_model(str(tmp_path / "q"))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_changed_buckets_counts_weights_quantization_cannot_send_back(micro_tokenizer):
    target = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
    same = changed_buckets(target, target, QuantizeConfig(bits=4, group_size=16))
    assert same["changed"] == 0 and same["weights"] > 0
    moved = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
    with torch.no_grad():
        moved.model.layers[0].mlp.up_proj.weight.add_(1.0)  # a large update on one tensor
    result = changed_buckets(moved, target, QuantizeConfig(bits=4, group_size=16))
    assert result["changed"] > 0 and result["changed"] <= moved.model.layers[0].mlp.up_proj.weight.numel()


def test_changed_buckets_under_a_mask_counts_only_the_selected_weights(micro_tokenizer):
    """Only the masked entries are counted: one tensor's selected half moved far, the rest of the model
    moved too but unselected, gives exactly the selected half as changed out of the selected weights."""
    from grin_unlearn.scoring import eligible_parameters

    target = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
    moved = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
    params = eligible_parameters(moved)
    name = next(n for n, p in params.items() if p.dim() == 2)
    masks = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in params.items()}
    masks[name][: masks[name].shape[0] // 2] = True  # the first half of the rows selected
    with torch.no_grad():
        for p in params.values():
            p.add_(10.0)  # every eligible weight moved by many buckets
    config = QuantizeConfig(bits=4, group_size=16)
    selected = changed_buckets(moved, target, config, masks)
    assert selected["weights"] == int(masks[name].sum()) and selected["changed"] == selected["weights"]
    everything = changed_buckets(moved, target, config)
    assert everything["weights"] > selected["weights"] and everything["share"] > 0.99


def test_relearn_and_probe_halves_are_disjoint_cover_and_split_every_entity(micro_world):
    records = micro_world["forget10"]
    relearn, probe = split_relearn_probe(records, seed=3)
    assert not set(relearn) & set(probe) and sorted(relearn + probe) == list(range(len(records)))
    for author in {r["author"] for r in records}:
        mine = [i for i, r in enumerate(records) if r["author"] == author]
        assert len([i for i in mine if i in relearn]) == len(mine) // 2
    assert split_relearn_probe(records, seed=3) == (relearn, probe) != split_relearn_probe(records, seed=4)


def test_relearning_with_lr_zero_changes_no_weight_and_no_metric(micro_world, micro_tokenizer):
    from grin_unlearn.evaluation import EvalConfig, evaluate

    model = build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sets = {"forget10": micro_world["forget10"][:6], "retain90": micro_world["retain90"][:6]}
    roles = {"forget10": "forget", "retain90": "retain"}
    config = EvalConfig(max_new_tokens=6, batch_size=8, mia=False)

    def metrics(_k):
        result = evaluate(model, micro_tokenizer, sets, roles, config=config)
        return {name: entry["per_item"] for name, entry in result["sets"].items()}

    curve = relearn_curve(model, micro_tokenizer, micro_world["forget10"][6:12], [0, 3], 0.0, 2, 0, metrics)
    assert curve[0] == curve[3]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    moved = relearn_curve(model, micro_tokenizer, micro_world["forget10"][6:12], [2], 1e-2, 2, 0, metrics)
    assert moved[2] != curve[0]


def test_recovery_share_by_hand():
    """(0.6 - 0.2) / (0.9 - 0.1) = 0.5; a zero gap or a missing value gives None."""
    assert recovery(0.6, 0.2, 0.9, 0.1) == pytest.approx(0.5)
    assert recovery(0.6, 0.2, 0.5, 0.5) is None and recovery(None, 0.2, 0.9, 0.1) is None
    table = recovery_table({"forget_rouge_l": 0.6}, {"forget_rouge_l": 0.2}, {"forget_rouge_l": 0.9},
                           {"forget_rouge_l": 0.1})
    assert table == {"forget_rouge_l": {"attacked": 0.6, "oracle_attacked": 0.2, "target": 0.9, "oracle": 0.1,
                                        "recovery": pytest.approx(0.5)}}


@pytest.mark.slow
def test_attack_cli_writes_recovery_for_both_attacks(micro_model_dir, micro_world_dir, tmp_path):
    from grin_unlearn.cli import main

    common = ["--model", str(micro_model_dir), "--target", str(micro_model_dir), "--oracle", str(micro_model_dir),
              "--data", str(micro_world_dir), "--max-items", "4"]
    assert main(["attack", "quantize", *common, "--bits", "8", "4", "--group-size", "16", "--out",
                 str(tmp_path / "q")]) == 0
    report = json.loads((tmp_path / "q" / "attack.json").read_text())
    assert report["settings"] == ["8-bit RTN, groups of 16", "4-bit RTN, groups of 16"]
    # one model as unlearned, target and oracle: the target-oracle gap is 0, so no recovery share exists
    assert all(row["recovery"] is None for table in report["recovery"]["unlearned"].values() for row in table.values())
    assert report["changed_buckets"]["unlearned"]["4-bit RTN, groups of 16"]["changed"] == 0
    assert report["runs"]["oracle"]["none"]["forget_quality"] == 1.0  # the unattacked oracle against itself
    assert main(["attack", "relearn", *common, "--steps", "0", "2", "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "attack.json").read_text())
    split = report["split"]
    assert not set(split["relearn"]) & set(split["probe"]) and set(report["runs"]["unlearned"]) == {"0", "2"}
    assert not (tmp_path / "r" / "recovery.png").exists()  # no share to plot: target = oracle here
    assert main(["attack", "relearn", *common, "--steps", "0", "--out", str(tmp_path / "r")]) == 2  # exists


def test_attack_cli_runs_under_the_precision_it_is_given(micro_model_dir, micro_world_dir, tmp_path, monkeypatch):
    from grin_unlearn.cli import main
    from grin_unlearn.evaluation.attacks import study

    seen = []

    def relearn_study(*args, **kwargs):  # what the attack's evaluations and relearning steps would run under
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return {"runs": {}, "recovery": {}}

    monkeypatch.setattr(study, "relearn_study", relearn_study)
    monkeypatch.setattr(study, "plot_relearn_recovery", lambda *a, **k: None)
    common = ["--model", str(micro_model_dir), "--data", str(micro_world_dir), "--max-items", "4", "--steps", "0"]
    assert main(["attack", "relearn", *common, "--precision", "bf16", "--out", str(tmp_path / "b")]) == 0
    assert main(["attack", "relearn", *common, "--out", str(tmp_path / "f")]) == 0
    assert seen == [True, False]


@pytest.mark.slow
def test_study_gives_share_one_to_the_target_and_zero_to_the_oracle(micro_world, micro_tokenizer, tmp_path):
    """With two different models as target and oracle, an "unlearned" model equal to the target recovers
    share 1 before any attack and one equal to the oracle share 0, on every metric where they differ;
    both attacks report every label; the relearning plot is written."""
    from grin_unlearn.data.formatting import PromptFormat
    from grin_unlearn.evaluation import EvalConfig
    from grin_unlearn.evaluation.attacks.study import (RelearnSettings, plot_relearn_recovery, quantization_study,
                                                       relearn_study)
    from grin_unlearn.models import save_model_folder

    paths = {}
    for label, seed in (("target", 0), ("oracle", 1)):
        paths[label] = save_model_folder(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=seed), micro_tokenizer,
                                         tmp_path / label)
    paths.update(like_target=paths["target"], like_oracle=paths["oracle"])
    from grin_unlearn.models import load_model

    sets = {"forget10": micro_world["forget10"][:8], "retain90": micro_world["retain90"][:4]}
    roles = {"forget10": "forget", "retain90": "retain"}
    args = (lambda p: load_model(str(p)), micro_tokenizer, sets, roles, PromptFormat(),
            EvalConfig(max_new_tokens=4, batch_size=8, mia=False))
    quant = quantization_study(paths, *args, [QuantizeConfig(bits=4, group_size=16)])
    relearn = relearn_study(paths, *args, RelearnSettings(steps=(0, 2), lr=1e-2, batch_size=2))
    for report, before in ((quant, "none"), (relearn, "0")):
        assert set(report["runs"]) == set(paths)
        shares = {label: report["recovery"][label][before] for label in ("like_target", "like_oracle")}
        gaps = [m for m, row in shares["like_target"].items() if row["recovery"] is not None]
        assert gaps  # two random models differ on some forget metric
        for metric in gaps:
            assert shares["like_target"][metric]["recovery"] == pytest.approx(1.0)
            assert shares["like_oracle"][metric]["recovery"] == pytest.approx(0.0, abs=1e-12)
    assert quant["changed_buckets"]["like_target"]["4-bit RTN, groups of 16"]["changed"] == 0
    assert quant["changed_buckets"]["like_oracle"]["4-bit RTN, groups of 16"]["changed"] > 0
    assert plot_relearn_recovery(relearn, tmp_path / "recovery.png", metric=next(iter(gaps))).stat().st_size > 0


def test_relearn_on_the_probe_alone_gives_the_forget_metrics_of_the_full_evaluation(micro_world, micro_tokenizer,
                                                                                     tmp_path):
    """``scope="forget"`` evaluates only the probe half: every forget metric equals the one the full
    evaluation (``scope="all"``) reports at every step, and model utility is left out."""
    from grin_unlearn.data.formatting import PromptFormat
    from grin_unlearn.evaluation import EvalConfig
    from grin_unlearn.evaluation.attacks.study import RelearnSettings, relearn_study
    from grin_unlearn.models import load_model, save_model_folder

    paths = {label: save_model_folder(build_tiny_model(MICRO_MODEL, micro_tokenizer, seed=seed), micro_tokenizer,
                                      tmp_path / label) for label, seed in (("target", 0), ("oracle", 1), ("m", 2))}
    sets = {"forget10": micro_world["forget10"][:8], "retain90": micro_world["retain90"][:4]}
    roles = {"forget10": "forget", "retain90": "retain"}
    args = (lambda p: load_model(str(p)), micro_tokenizer, sets, roles, PromptFormat(),
            EvalConfig(max_new_tokens=4, batch_size=8, mia=False))
    alone = relearn_study(paths, *args, RelearnSettings(steps=(0, 2), lr=1e-2, batch_size=2, scope="forget"))
    full = relearn_study(paths, *args, RelearnSettings(steps=(0, 2), lr=1e-2, batch_size=2, scope="all"))
    for label in paths:
        for step in ("0", "2"):
            assert full["runs"][label][step]["model_utility"] is not None
            assert alone["runs"][label][step].get("model_utility") is None
            forget_keys = [k for k in full["runs"][label][step] if k.startswith("forget_")]
            assert forget_keys
            for key in forget_keys:
                assert alone["runs"][label][step][key] == pytest.approx(full["runs"][label][step][key]), key
    with pytest.raises(UserInputError):
        RelearnSettings(scope="retain")


def test_attack_cli_with_labelled_models_reads_the_model_folders_prompt_format(micro_model_dir, micro_world_dir,
                                                                               tmp_path):
    """``--models LABEL=PATH`` alone evaluates in the format recorded in the model folder (here the
    non-default ``split`` style), exactly as ``--model PATH`` does: same format, same unattacked numbers."""
    import shutil

    from grin_unlearn.cli import main
    from grin_unlearn.data.formatting import PromptFormat

    model = tmp_path / "run" / "model"
    shutil.copytree(micro_model_dir, model)
    PromptFormat(style="split", max_length=64).save(model)
    common = ["--data", str(micro_world_dir), "--max-items", "4", "--bits", "4", "--group-size", "16"]
    assert main(["attack", "quantize", "--model", str(model), *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["attack", "quantize", "--models", f"m={model}", *common, "--out", str(tmp_path / "b")]) == 0
    by_model, by_label = (json.loads((tmp_path / d / "attack.json").read_text()) for d in ("a", "b"))
    assert by_label["prompt_format"]["style"] == "split" and by_label["prompt_format"]["max_length"] == 64
    assert by_label["prompt_format"] == by_model["prompt_format"]
    assert by_label["runs"]["m"] == by_model["runs"]["unlearned"]
    assert main(["attack", "quantize", "--models", "m", *common, "--out", str(tmp_path / "c")]) == 2  # no =PATH


def test_a_small_shift_of_a_groups_range_is_not_a_changed_bucket():
    """Moving one weight of a group by less than a step shifts the group's grid by a little: every other
    weight keeps its level (not counted), while a weight moved by several steps is counted."""
    from torch import nn

    class One(nn.Module):  # a model whose only eligible weight is one 2-D tensor in a block
        def __init__(self, weight):
            super().__init__()
            self.model = nn.Module()
            self.model.layers = nn.ModuleList([nn.Module()])
            self.model.layers[0].mlp = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
            with torch.no_grad():
                self.model.layers[0].mlp.weight.copy_(weight)

    torch.manual_seed(0)
    weight = torch.randn(4, 16)
    config = QuantizeConfig(bits=4, group_size=None)
    step = (weight.amax(dim=1) - weight.amin(dim=1)) / 15
    nudged = weight.clone()
    row_max = int(weight[0].argmax())
    nudged[0, row_max] += 0.05 * float(step[0])  # the row's range grows by a twentieth of a step
    moved = weight.clone()
    moved[1, 0] = weight[1].amin() if weight[1, 0] > weight[1].mean() else weight[1].amax()  # across the row
    assert changed_buckets(One(nudged), One(weight), config)["changed"] <= 1
    assert changed_buckets(One(moved), One(weight), config)["changed"] >= 1
