"""Mixed precision: ``fp32`` (the default) or ``bf16`` autocast over fp32 weights.

Under ``bf16`` the matrix products of the forward pass run in bfloat16 (``torch.autocast``), while the
weights, their gradients, the optimizer's state and GRIN's accumulators ``G_f``/``G_r`` stay fp32:
autocast casts copies, and gradients flow back to the fp32 masters. On CPUs with bf16 units (AMX) a
135M model's forward takes about 0.3 s instead of 0.8 s; on GPUs it is the usual mixed precision.
How far it moves the numbers is measured in ``bench/bench_precision.py`` (docs/performance.md).

No cast cache: ``torch.autocast`` keeps the bf16 copy of each fp32 weight that requires grad until the
outermost autocast block exits, and our blocks span whole runs (scoring, every training step,
evaluation). With the cache, every forward after the first optimizer step would multiply by the
weights as they were before it. ``cache_enabled=False`` casts each weight at each use instead, and
:class:`~grin_unlearn.training.trainer.UnlearningTrainer` also clears the cache at every step, for a
caller who wraps a run in a ``torch.autocast`` of their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import UserInputError

PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UserInputError(f"--precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@contextlib.contextmanager
def autocast(precision: str, device: str | torch.device = "cpu") -> Iterator[None]:
    """Run the block in ``precision`` on ``device``'s type (``fp32``: as it is)."""
    if check_precision(precision) == "fp32":
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, cache_enabled=False):
        yield
