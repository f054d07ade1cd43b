"""training/arguments.py and models.load_model behave the same at both ends of the transformers range.

`make test` runs this file with the newest transformers and with the declared floor (4.45).
"""

from __future__ import annotations

import pytest
import torch

from grin_unlearn.models import load_model
from grin_unlearn.training.arguments import enable_gradient_checkpointing, training_arguments


@pytest.mark.parametrize("ratio, total, expected", [(0.1, 50, 5), (0.25, 10, 3), (0.05, 7, 1), (0.0, 40, 0)])
def test_warmup_ratio_gives_ceil_of_ratio_times_total_steps(tmp_path, ratio, total, expected):
    """HF's rule: warm-up steps = ceil(ratio · total). The old code passed the ratio as `warmup_steps`,
    which 4.x read as 0 steps (an int field) instead of a ratio."""
    args = training_arguments(str(tmp_path), epochs=1, learning_rate=1e-3, batch_size=2, warmup_ratio=ratio,
                              weight_decay=0.0, seed=0, scheduler="linear")
    assert args.get_warmup_steps(total) == expected


def test_gradient_checkpointing_reaches_blocks_behind_frozen_embeddings(micro_model, micro_tokenizer):
    """Reentrant checkpointing (4.x's default) leaves the blocks without gradient when no input requires one."""
    micro_model.train()
    micro_model.model.embed_tokens.weight.requires_grad_(False)
    enable_gradient_checkpointing(micro_model)
    ids = torch.tensor([micro_tokenizer("Where was the author born?")["input_ids"]])
    micro_model(input_ids=ids, labels=ids).loss.backward()
    grad = micro_model.model.layers[0].mlp.up_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_load_model_honours_the_dtype(micro_model_dir):
    """4.45 ignores `dtype=` (it reads `torch_dtype=`) and would load float32."""
    model = load_model(str(micro_model_dir), dtype="bfloat16", device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
