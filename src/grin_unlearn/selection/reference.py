"""The specification of step 2 as code: a deliberately naive top-p selection.

Concatenate, stable sort, take the first k. The tests and ``bench/bench_selection.py`` check
:func:`~grin_unlearn.selection.top_fraction.select_top_fraction` against it: same contract, ``O(N)``
memory with int64 sort indices, so it is not what the pipeline runs.
"""

from __future__ import annotations

import torch

from ..errors import UserInputError
from .top_fraction import validate_ratio


def brute_force_top_fraction(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Reference for :func:`select_top_fraction`: concatenate, stable sort, take the first ``k``.

    Same contract (fp32 comparison, same ``k``, same tie-break, same errors), memory ``O(N)`` with
    int64 sort indices: for tests and benchmarks only.
    """
    k, total = validate_ratio(scores, ratio)
    for name, s in scores.items():
        if torch.isnan(s).any():
            raise UserInputError(f"scores[{name!r}]: contains NaN (expected real-valued scores)")
    flat = torch.cat([s.detach().reshape(-1).float().cpu() for s in scores.values()])  # (N,)
    # Stable descending sort keeps equal scores in concatenation order: tensor order, then flat index.
    order = torch.sort(flat, descending=True, stable=True).indices[:k]  # (k,)
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[order] = True
    masks: dict[str, torch.Tensor] = {}
    start = 0
    for name, s in scores.items():
        masks[name] = chosen[start : start + s.numel()].reshape(s.shape).to(s.device)
        start += s.numel()
    return masks
