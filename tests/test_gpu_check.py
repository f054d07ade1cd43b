"""The memory model (bench/memory_model.py) and the GPU check (bench/gpu_check.py) in its CPU dry run.

What is asserted:

* the memory model's closed-form parameter counts ``P``, ``E`` and the largest eligible tensor equal
  those of ``LlamaForCausalLM`` built on the meta device for Llama-2 7B / 13B / 70B (with
  :func:`eligible_parameters`, the pipeline's own choice of eligible weights);
* its saved-activation formula equals the bytes autograd actually saves (``saved_tensors_hooks``,
  distinct storages other than the weights) in a forward pass of the 10M model with only the eligible
  weights requiring gradients (trainable RMSNorm weights would add their normalised inputs), within 2 % (what it
  leaves out: the first token of each row, which has no label, and RMSNorm's per-token rsqrt and the
  attention's log-sum-exp, a few bytes per token and layer);
* ``gpu_check.py --dry-run`` (run in this process, as ``main(argv)``) exits 0 and its JSON is consistent: the model has the predicted ``P`` and
  ``E``; each p selected exactly ``round(p·E)`` weights; the bytes the masked optimizer holds (every
  tensor it references, counted by storage) equal the layout formula on the masks' counts; torch's fused AdamW holds ``2·2`` bytes (bf16 moments) per trainable weight plus a
  4-byte step per tensor; every ratio is its measured / reference; the measured peaks are within
  ±15 % of the model;
* ``gpu_check.py`` without ``--dry-run`` on a machine with no CUDA exits 2 with a message and writes
  nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import gpu_check  # noqa: E402
import memory_model as mm  # noqa: E402

from grin_unlearn.scoring import eligible_parameters  # noqa: E402


def _run(argv: list[str]) -> tuple[int, str, str]:
    """``bench/gpu_check.py ARGV`` in this process (its imports are already paid): exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            gpu_check.main(argv)
        except SystemExit as stop:
            code = stop.code
    return code, out.getvalue(), err.getvalue()


def _llama(shape: mm.LlamaShape):
    from memory_steps import llama_config
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(llama_config(shape, 64))


@pytest.mark.parametrize("name", ["7b", "13b", "70b"])
def test_closed_form_counts_match_the_model(name):
    shape = mm.SHAPES[name]
    with torch.device("meta"):
        model = _llama(shape)
    eligible = eligible_parameters(model)
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert shape.eligible == sum(p.numel() for p in eligible.values())
    assert shape.largest_eligible == max(p.numel() for p in eligible.values())
    assert shape.layer == sum(p.numel() for p in model.model.layers[0].parameters())


def test_saved_activations_match_what_autograd_saves():
    from grin_unlearn.scoring.gradients import batch_loss

    shape, rows, seq = mm.SHAPES["10m"], 2, 32
    torch.manual_seed(0)
    model = _llama(shape).eval()
    model.requires_grad_(False)
    for param in eligible_parameters(model).values():  # as in a gradient pass; masked training freezes more
        param.requires_grad_(True)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    ids = torch.randint(4, shape.vocab, (rows, seq))
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        batch_loss(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    predicted = mm.saved_activations(shape, rows * seq, 4)
    assert sum(saved.values()) == pytest.approx(predicted, rel=0.02)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    code, stdout, stderr = _run(["--dry-run", "--out", str(out)])
    assert code == 0, stderr[-2000:]
    assert "| masked AdamW step, p=0.4 (ms) |" in stdout  # the table was printed
    return json.loads(out.read_text())


def test_dry_run_counts_and_selection(dry_run):
    shape = mm.SHAPES["tiny"]
    assert (dry_run["params"], dry_run["eligible"]) == (shape.params, shape.eligible)
    assert [o["ratio"] for o in dry_run["optimizer"]] == [0.1, 0.2, 0.4]
    for o in dry_run["optimizer"]:
        assert o["eligible"] == shape.eligible
        assert o["selected"] == round(o["ratio"] * shape.eligible)


def test_dry_run_optimizer_state_equals_the_formula(dry_run):
    tensors = 7 * mm.SHAPES["tiny"].layers
    for o in dry_run["optimizer"]:
        layout = mm.LAYOUTS[o["layout"]]
        assert o["tensors"] == tensors  # random scores select weights in every eligible tensor at p >= 0.1
        assert o["state_bytes"] == o["state_bytes_formula"] == layout.state_bytes(
            o["selected"], o["trainable_elements"], o["k_max"], o["tensors"])
        assert o["state_bytes"] >= 8 * o["selected"]  # fp32 moments of the selected weights, none for others
        assert o["fused_adamw_state_bytes"] == 2 * 2 * o["eligible"] + 4 * tensors


def test_dry_run_ratios_are_measured_over_reference(dry_run):
    s = dry_run["scoring"]
    assert s["ratio"] == pytest.approx(s["passes_seconds"] / s["floor_seconds"])
    assert s["passes_seconds"] > 0 and s["floor_seconds"] > 0
    for o in dry_run["optimizer"]:
        assert o["slowdown"] == pytest.approx(o["masked_step_ms"] / o["fused_adamw_step_ms"])
    for step in ("scoring", "training"):
        m = dry_run["memory"][step]
        assert m["ratio"] == pytest.approx(m["measured"] / m["predicted"])
        assert 0.85 <= m["ratio"] <= 1.15, (step, m)
    assert dry_run["fsdp2"] == {"skipped": "fewer than 2 GPUs"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_no_cuda_exits_2_with_a_message(tmp_path):
    out = tmp_path / "gpu_check.json"
    code, stdout, stderr = _run(["--out", str(out)])
    assert code == 2
    assert "no CUDA device" in stderr and "--dry-run" in stderr
    assert not out.exists() and stdout == ""
