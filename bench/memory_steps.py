"""The steps whose peak memory the memory model predicts, run the way the pipeline runs them.

Shared by ``bench/bench_memory.py`` (CPU, 10M-100M, one process and FSDP2 over gloo) and
``bench/gpu_check.py`` / ``bench/gpu_check_fsdp2.py`` (1B on CUDA), so both measure the same phases
against :func:`memory_model.predict`:

* **scoring** (:func:`score_and_select`): the ``G_f`` and ``G_r`` passes of
  :func:`grin_unlearn.scoring.accumulate_example_gradients` (both kept), the ``grin`` scorer, then
  :func:`grin_unlearn.selection.top_fraction.select_top_fraction`; the memory model's ``scoring``;
* **training** (:func:`train_steps`): masked training as the pipeline sets it up
  (:func:`grin_unlearn.training.masked_optim.make_masked_optimizer`: unselected tensors frozen,
  gradient-mask hooks, ``MaskedAdamW`` with weight decay), one forward + backward over forget + retain
  rows with the answer log-probs of :func:`grin_unlearn.scoring.gradients.batch_loss` and an optimizer
  step, twice; the model's ``training``;
* **backward** (:func:`backward_pass`): one forward + backward of a scoring batch keeping the eligible
  weights' gradients (under FSDP2: reduce-scattered into shards); the model's ``backward``, what the
  sharding costs before GRIN's accumulators.

A model is a random-initialised ``LlamaForCausalLM`` of a :class:`memory_model.LlamaShape` fed random
tokens (no download); under FSDP2 it is wrapped by the library's own
:func:`grin_unlearn.parallel.sharding.shard_model`. :class:`PeakMemory` measures a step: on CUDA
``torch.cuda.max_memory_allocated`` over the start, on the CPU :class:`allocator_trace.AllocatorPeak`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import memory_model as mm  # noqa: E402
from allocator_trace import AllocatorPeak  # noqa: E402

RATIOS = (0.1, 0.2, 0.4)  # the selection ratios the GPU check measures
DTYPE = torch.bfloat16  # its weights' dtype


def llama_config(shape: mm.LlamaShape, seq: int):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                       num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                       num_key_value_heads=shape.kv_heads, max_position_embeddings=max(seq, 128),
                       tie_word_embeddings=shape.tied)


def build_model(shape: mm.LlamaShape, seq: int, dtype: torch.dtype, device: str = "cpu", seed: int = 0):
    """A random-initialised ``LlamaForCausalLM`` of ``shape`` in ``dtype`` on ``device``, in eval mode."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(llama_config(shape, seq))
    return model.to(dtype).eval()


def shard(model, device: torch.device):
    """The pipeline's FSDP2 wrapping (:func:`grin_unlearn.parallel.sharding.shard_model`; process group initialised)."""
    from grin_unlearn.parallel.sharding import shard_model

    return shard_model(model, device)


def token_examples(vocab: int, rows: int, seq: int, seed: int) -> list[dict]:
    """``rows`` synthetic examples of ``seq`` random tokens, every token but the first scored."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (rows, seq), generator=gen).tolist()
    return [{"input_ids": row, "labels": [-100] + row[1:]} for row in ids]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak bytes allocated inside the ``with`` block over what was allocated when it began.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. CPU: torch's CPU
    allocator, frees on every thread included (:class:`allocator_trace.AllocatorPeak`)."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._cpu = AllocatorPeak().__enter__()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            self._cpu.__exit__(*exc)
            self.peak = self._cpu.peak
        return False


def score_and_select(model, params, forget, retain, collator, batch_size: int, ratio: float, device):
    """GRIN steps 1-2 as the pipeline runs them; returns ``(masks, seconds of the passes, of score+select)``."""
    from grin_unlearn.scoring import ScoringContext, accumulate_example_gradients, get_scorer
    from grin_unlearn.selection.top_fraction import select_top_fraction

    start = time.perf_counter()
    gf = accumulate_example_gradients(model, forget, params, collator, batch_size=batch_size)
    gr = accumulate_example_gradients(model, retain, params, collator, batch_size=batch_size)
    sync(device)
    passes = time.perf_counter() - start
    with torch.no_grad():
        scores = get_scorer("grin")(ScoringContext(params, gf, gr))
    masks = select_top_fraction(scores, ratio)
    sync(device)
    return masks, passes, time.perf_counter() - start - passes


def random_masks(params: dict, ratio: float, device=None) -> dict[str, torch.Tensor]:
    """Top-``ratio`` masks of the ``random`` scorer (sharded like ``params`` under FSDP2)."""
    from grin_unlearn.scoring import ScoringContext, get_scorer
    from grin_unlearn.selection.top_fraction import select_top_fraction

    with torch.no_grad():
        return select_top_fraction(get_scorer("random")(ScoringContext(params, device=device)), ratio)


def make_optimizer(model, masks: dict[str, torch.Tensor], lr: float = 1e-4, weight_decay: float = 0.01):
    """The pipeline's masked optimizer (:func:`grin_unlearn.training.masked_optim.make_masked_optimizer`):
    frozen unselected tensors, gradient-mask hooks (handles in ``optimizer.gradient_hooks``), masked AdamW."""
    from grin_unlearn.training.masked_optim import make_masked_optimizer

    return make_masked_optimizer(model, masks, lr=lr, weight_decay=weight_decay)


def train_steps(model, masks, rows: dict, steps: int = 2):
    """``steps`` masked training steps over ``rows`` (forget + retain); returns the optimizer."""
    from grin_unlearn.scoring.gradients import batch_loss

    optimizer = make_optimizer(model, masks)
    model.train()
    for _ in range(steps):
        batch_loss(model, rows).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    return optimizer


def backward_pass(model, params: dict, rows: dict) -> None:
    """One forward + backward over ``rows`` with only ``params`` requiring gradients; the gradients stay."""
    from grin_unlearn.scoring.gradients import batch_loss

    model.requires_grad_(False)
    for param in params.values():
        param.requires_grad_(True)
    batch_loss(model, rows).backward()


def release(model, optimizer) -> None:
    """Undo :func:`make_optimizer`: drop its gradient hooks and make every parameter trainable again."""
    for handle in getattr(optimizer, "gradient_hooks", []):
        handle.remove()
    for p in model.parameters():
        p.requires_grad_(True)
        p.grad = None


def mask_counts(masks: dict[str, torch.Tensor]) -> dict[str, int]:
    """What the optimizer-state formula needs, over this process's rows (all of them in one process):
    selected weights, elements and number of the trainable tensors (those with a selected weight
    here), and the most selected in one tensor."""
    from grin_unlearn.parallel.sharding import local

    counts = [(int(local(m).sum()), local(m).numel()) for m in masks.values()]
    counts = [(k, n) for k, n in counts if k]
    return {"selected": sum(k for k, _ in counts), "trainable_elements": sum(n for _, n in counts),
            "k_max": max((k for k, _ in counts), default=0), "tensors": len(counts)}


def held_bytes(optimizer) -> int:
    """Bytes of every distinct tensor storage the optimizer holds: its state, plus any dict of
    tensors among its attributes (indices, scratch). A measurement, independent of the layout."""
    seen: dict[int, int] = {}

    def add(value) -> None:
        if torch.is_tensor(value):
            if hasattr(value, "to_local"):  # a DTensor: the storage is its local shard's
                value = value.to_local()
            storage = value.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(value, dict):
            for item in value.values():
                add(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                add(item)

    for state in optimizer.state.values():
        add(state)
    for key, value in vars(optimizer).items():
        if key not in ("state", "param_groups", "defaults"):
            add(value)
    return sum(seen.values())


def expected_state_bytes(optimizer, masks: dict[str, torch.Tensor]) -> int:
    """:meth:`memory_model.OptimizerLayout.state_bytes` for this optimizer's layout and the mask counts."""
    c = mask_counts(masks)
    return mm.layout_of(optimizer).state_bytes(c["selected"], c["trainable_elements"], c["k_max"], c["tensors"])
