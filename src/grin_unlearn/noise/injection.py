"""Gaussian noise on the selected weights (GRIN step 3).

GRIN (Anjarlekar & Pombra, "LLM Unlearning using Gradient Ratio-Based Influence Estimation and Noise
Injection", arXiv 2508.06467): before masked unlearning, every selected weight is perturbed,
``theta_i <- theta_i + eps_i``, ``eps_i ~ N(0, sigma^2)`` for ``i in S``; unselected weights are left
exactly as they were. The paper uses one absolute variance ``sigma^2`` for all tensors.

Reproducibility: noise is drawn in fp32 on the CPU from a ``torch.Generator`` seeded from ``seed`` and
the tensor's *name* (a SHA-256 of both), one tensor at a time in fixed-size chunks, then moved to the
parameter's device and dtype. The same seed therefore gives the same noise on every device, in every
process, and for a tensor regardless of which other tensors are passed alongside it.

Sharded parameters (FSDP2 ``DTensor``s, :mod:`grin_unlearn.parallel.sharding`): a tensor's draws are one
``randn(n_j)`` per chunk ``j`` of the full flattened tensor, ``n_j`` = selected entries in the chunk,
taken in row-major order. Each process learns every ``n_j`` and how many of its entries precede its own
shard's (an all-gather of per-chunk counts), replays the draws of every chunk up to the end of its
shard and keeps its own slice of each, so the assembled weights equal the single-process ones bit for
bit. Each process draws up to ``p·numel`` values per tensor; only its own shard is written.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..parallel.distributed import rank_and_world_size
from ..errors import UserInputError
from ..seeding import named_generator
from ..parallel.sharding import all_gather_counts, all_reduce_sum, flat_range, is_sharded, local

NOISE_MODES: tuple[str, ...] = ("absolute", "relative")

_CHUNK = 1 << 22  # elements of a parameter handled at once (bounds the CPU noise buffer)


def inject_noise(
    params: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    variance: float,
    mode: str = "absolute",
    seed: int = 0,
) -> dict:
    """Add ``N(0, sigma^2)`` noise in place to the masked entries of ``params``.

    ``theta_i <- theta_i + eps_i`` for ``mask_i = True``, ``eps_i ~ N(0, sigma^2)`` i.i.d.
    (arXiv 2508.06467). Modes:

    * ``"absolute"`` (the paper): ``sigma^2 = variance`` for every tensor.
    * ``"relative"`` (our extension): ``sigma = sqrt(variance) * std(theta)`` per tensor, with
      ``std`` the population standard deviation of the whole tensor before noise, so ``variance`` is a
      noise-to-signal power ratio that means the same for tensors of different scale.

    The sum is done in fp32 and rounded once to the parameter's dtype; only masked entries are
    written, so every other entry stays bit-identical. Tensors whose names are not in ``masks`` are not
    touched. ``variance == 0`` is a no-op.

    Returns ``{"mode", "variance", "seed", "tensors", "perturbed", "realised_std"}``: the number of
    tensors and entries changed and the root mean square of the change actually applied (after
    rounding to the parameter dtype; the noise has mean 0, so this estimates ``sigma``).

    Raises :class:`UserInputError` for an unknown mode, a negative or non-finite variance, a non-int
    seed, a mask name missing from ``params``, or a mask that is not a bool tensor of the same shape.
    """
    _validate(params, masks, variance, mode, seed)
    seed = int(seed)
    summary = {"mode": mode, "variance": float(variance), "seed": seed, "tensors": 0, "perturbed": 0}
    sum_sq = 0.0
    if variance > 0:
        with torch.no_grad():
            for name, param in params.items():
                if name not in masks:
                    continue
                sigma = _sigma(param, variance, mode)
                perturb = _perturb_shard if is_sharded(param) else _perturb
                count, tensor_sum_sq = perturb(param, masks[name], sigma, named_generator(f"grin-noise:{seed}:{name}"))
                summary["tensors"] += int(count > 0)
                summary["perturbed"] += count
                sum_sq += tensor_sum_sq
        if any(is_sharded(params[name]) for name in masks):  # counts are already global; sum the squares
            sum_sq = float(all_reduce_sum(np.array([sum_sq], dtype=np.float64))[0])
    summary["realised_std"] = math.sqrt(sum_sq / summary["perturbed"]) if summary["perturbed"] else 0.0
    return summary


def _validate(params: dict, masks: dict, variance: float, mode: str, seed: int) -> None:
    if mode not in NOISE_MODES:
        raise UserInputError(f"mode: unknown noise mode {mode!r} (expected one of {', '.join(NOISE_MODES)})")
    if isinstance(variance, bool) or not isinstance(variance, numbers.Real) or not math.isfinite(variance):
        raise UserInputError(f"variance: expected a finite number >= 0, got {variance!r}")
    if variance < 0:
        raise UserInputError(f"variance: expected a number >= 0, got {variance!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise UserInputError(f"seed: expected an integer, got {seed!r}")
    for name, mask in masks.items():
        if name not in params:
            raise UserInputError(f"masks: tensor {name!r} is not among the parameters given")
        param = params[name]
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise UserInputError(f"masks[{name!r}]: expected a bool tensor, got {getattr(mask, 'dtype', type(mask))}")
        if mask.shape != param.shape:
            raise UserInputError(
                f"masks[{name!r}]: shape {tuple(mask.shape)} does not match the parameter's {tuple(param.shape)}"
            )
        if not param.is_floating_point():
            raise UserInputError(f"params[{name!r}]: expected a floating-point tensor, got {param.dtype}")


def _sigma(param: torch.Tensor, variance: float, mode: str) -> float:
    if mode == "absolute":
        return math.sqrt(variance)
    whole = param.detach().full_tensor() if is_sharded(param) else param.detach()  # the single-process std, exactly
    std = float(whole.float().std(correction=0)) if param.numel() else 0.0
    return math.sqrt(variance) * std


def _perturb(param: torch.Tensor, mask: torch.Tensor, sigma: float, gen: torch.Generator) -> tuple[int, float]:
    """Add noise to the masked entries; return (entries changed, sum of squared applied changes)."""
    data = param.data if isinstance(param, torch.nn.Parameter) else param
    mask = mask.to(data.device)
    if data.is_contiguous():
        pieces = [
            (data.view(-1)[i : i + _CHUNK], mask.reshape(-1)[i : i + _CHUNK]) for i in range(0, data.numel(), _CHUNK)
        ]
    else:  # rare: one piece; noise order is still the row-major order of the masked entries
        pieces = [(data, mask)]
    count, sum_sq = 0, 0.0
    for values, where in pieces:
        n = int(where.count_nonzero())
        if n == 0 or sigma == 0.0:
            continue
        noise = torch.randn(n, generator=gen, dtype=torch.float32) * sigma  # (n,) drawn on CPU
        old = values[where]  # (n,) param dtype
        new = (old.float() + noise.to(data.device)).to(data.dtype)  # one rounding to the param dtype
        values[where] = new
        count += n
        sum_sq += float((new.double() - old.double()).square().sum())
    return count, sum_sq


def _perturb_shard(param: torch.Tensor, mask: torch.Tensor, sigma: float, gen: torch.Generator) -> tuple[int, float]:
    """:func:`_perturb` on this process's shard, drawing exactly the single-process noise (module docstring).

    Returns the tensor's global count of changed entries and this shard's sum of squared changes.
    """
    rank = rank_and_world_size()[0]
    start, stop = flat_range(param)
    data, where = local(param.detach()).view(-1), local(mask).to(local(param).device).reshape(-1)  # (stop - start,)
    chunks = -(-param.numel() // _CHUNK)
    mine = np.zeros(chunks, dtype=np.int64)  # (J,) selected entries of this shard in each chunk
    for j in range(start // _CHUNK, -(-stop // _CHUNK)):
        lo, hi = max(j * _CHUNK, start) - start, min((j + 1) * _CHUNK, stop) - start
        mine[j] = int(where[lo:hi].count_nonzero())
    counts = all_gather_counts(mine)  # (W, J)
    totals, before = counts.sum(axis=0), counts[:rank].sum(axis=0)  # (J,) per chunk: all, on lower ranks
    sum_sq = 0.0
    for j in range(-(-stop // _CHUNK) if stop > start else 0):  # later chunks' draws cannot reach this shard
        if totals[j] == 0 or sigma == 0.0:
            continue
        noise = torch.randn(int(totals[j]), generator=gen, dtype=torch.float32) * sigma  # (n_j,) chunk j's draws
        if mine[j] == 0:
            continue
        lo, hi = max(j * _CHUNK, start) - start, min((j + 1) * _CHUNK, stop) - start
        values, selected = data[lo:hi], where[lo:hi]
        old = values[selected]  # (mine[j],) param dtype
        ours = noise[int(before[j]) : int(before[j] + mine[j])].to(data.device)
        new = (old.float() + ours).to(data.dtype)  # one rounding to the param dtype
        values[selected] = new
        sum_sq += float((new.double() - old.double()).square().sum())
    return int(totals.sum()) if sigma != 0.0 else 0, sum_sq
