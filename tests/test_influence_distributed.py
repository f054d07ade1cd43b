"""Two-process (gloo) gradient accumulation equals the single-process result.

The examples are cut into the same batches as in one process, rank ``r`` takes batches ``r, r + 2, ...``
and :func:`reduce_across_processes` sums the accumulators, so the result agrees with one process up to
the order of the fp32 additions, for any batch size (here 2 for forget, 1 for retain, and 3 batches of 2
so that one rank holds more batches than the other).
"""

from __future__ import annotations

import os
import textwrap

import pytest
import torch
import torch.distributed as dist

from grin_unlearn.data.formatting import PadCollator
from grin_unlearn.parallel.distributed import reduce_across_processes
from grin_unlearn.scoring import ScoringContext, accumulate_example_gradients, get_scorer
from grin_unlearn.scoring import eligible_parameters

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    sys.path.insert(0, sys.argv[2])
    from test_influence_distributed import setup
    from grin_unlearn.data.formatting import PadCollator
    from grin_unlearn.scoring import accumulate_example_gradients

    dist.init_process_group("gloo")
    model, params, forget, retain = setup()
    collate = PadCollator(0)
    gf = accumulate_example_gradients(model, forget, params, collate, batch_size=2)
    gr = accumulate_example_gradients(model, retain, params, collate, batch_size=1, max_samples=5, seed=3)
    if dist.get_rank() == 0:
        torch.save({"forget": gf, "retain": gr}, sys.argv[1])
    dist.destroy_process_group()
    """
)


def setup():
    """The same tiny Llama and examples in every process (seeded)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))
    gen = torch.Generator().manual_seed(1)
    examples = []
    for _ in range(12):
        ids = torch.randint(1, 32, (int(torch.randint(4, 10, (1,), generator=gen)),), generator=gen).tolist()
        examples.append({"input_ids": ids, "labels": [-100, -100] + ids[2:]})
    return model, eligible_parameters(model), examples[:5], examples[5:]


def test_reduce_is_identity_without_process_group():
    assert not dist.is_initialized()
    grads = {"a": torch.tensor([1.0, -2.0])}
    assert reduce_across_processes(grads)["a"].tolist() == [1.0, -2.0]


@pytest.mark.slow
def test_two_gloo_processes_match_single_process(tmp_path, launcher):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "grads.pt"
    launcher.run([*launcher.torchrun(2), str(script), str(out), os.path.dirname(__file__)], timeout=240)
    distributed = torch.load(out)

    model, params, forget, retain = setup()
    collate = PadCollator(0)
    single = {"forget": accumulate_example_gradients(model, forget, params, collate, batch_size=2),
              "retain": accumulate_example_gradients(model, retain, params, collate, batch_size=1,
                                                     max_samples=5, seed=3)}
    for which in single:
        assert list(distributed[which]) == list(single[which])
        for name in single[which]:
            torch.testing.assert_close(distributed[which][name], single[which][name], rtol=1e-5, atol=1e-7)
    ctx = lambda g: ScoringContext(params, g["forget"], g["retain"])  # noqa: E731
    scores_dist, scores_single = get_scorer("grin")(ctx(distributed)), get_scorer("grin")(ctx(single))
    for name in scores_single:
        torch.testing.assert_close(scores_dist[name], scores_single[name], rtol=1e-4, atol=0)
