"""GRIN step 2: the exact global top-p selection over the eligible weights' scores.

GRIN (Anjarlekar & Pombra, "LLM Unlearning using Gradient Ratio-Based Influence Estimation and Noise
Injection", arXiv 2508.06467) scores every
eligible weight with ``s_i = |G_f[i]| / (|G_r[i]| + eps)`` and keeps the global top ``p`` fraction:
the ``k = round(p * N)`` largest scores over *all* eligible tensors together (``N`` = their total
number of elements), not ``p`` per tensor. This module does that selection with bounded memory.

Selection algorithm (a two-pass radix select, no concatenation of all scores):

* Each fp32 score is turned into an int32 *key* that sorts like the float: for ``x >= 0`` the IEEE-754
  bit pattern itself (non-negative floats are ordered like their bits), for ``x < 0`` minus the bit
  pattern of ``|x|``. ``-0.0`` and ``+0.0`` both map to key 0, so they tie, as they compare equal.
* Pass 1: a 65,536-bin histogram of the high 16 bits of the keys over every tensor finds the bucket
  that holds the k-th largest key. Pass 2: a histogram of the low 16 bits of the keys inside that
  bucket finds the exact threshold key ``t`` and the number ``m`` of entries equal to ``t`` to take.
* Pass 3 builds the masks: ``key > t``, plus the first ``m`` entries with ``key == t`` in tensor
  order (dict order) then flat (row-major) index order. That is the deterministic tie-break.

Sharded scores (FSDP2: ``DTensor``s placed ``Shard(0)``, see :mod:`grin_unlearn.parallel.sharding`): each
process streams only its local shards and the two histograms are summed over processes (an all-reduce
of 2 × 65,536 int64 counts, nothing else of size N), so every process finds the same threshold. For
the tie-break, each process counts its ties per tensor; an all-gather of these counts gives the ties
that precede each shard in the global (tensor, flat index) order, since a tensor's shards are
consecutive row ranges in rank order. Each process then takes its share of the first ``m``: the masks,
placed like the scores, assemble into exactly the single-process masks.

Tensors are streamed in chunks of ``_CHUNK`` elements, so the extra memory is the masks (``N`` bytes)
plus a few chunk-sized temporaries, whatever the size of the largest tensor (a non-contiguous score
tensor is first copied to a contiguous one). CPU chunks are processed as numpy views, CUDA chunks as
torch tensors, by the same code.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator

import numpy as np
import torch

from ..errors import UserInputError
from ..parallel.distributed import rank_and_world_size
from ..parallel.sharding import all_gather_counts, all_reduce_sum, check_layout, global_count, is_sharded, local, shard_like

_CHUNK = 1 << 20  # elements per streamed chunk: 4 MiB of int32 keys
_BINS = 1 << 16  # radix of each histogram pass
_HALF = 1 << 15  # offset making the signed high half of a key a bin index
# Bins of raw fp32 bit patterns' high halves (+32768): NaN only, and +-inf (shared with some NaN).
_NAN_BINS = np.r_[0x7F81:0x8000, 0xFF81:0x10000]
_INF_BINS = np.array([0x7F80, 0xFF80])


def select_top_fraction(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Boolean masks selecting exactly ``k = round(ratio * N)`` weights with the largest scores.

    GRIN selection (arXiv 2508.06467): ``S = top-k_i s_i`` over all eligible weights jointly,
    ``k = round(p * N)``, ``p = ratio``. ``round`` is Python's (half to even).

    Ties: among equal scores the earlier tensor (dict order) wins, then the lower flat (row-major)
    index. Scores are compared in fp32 (fp16/bf16/fp64 are converted chunk by chunk; fp64 values that
    round to the same fp32 value tie). Any sign is allowed and ordered correctly (GRIN scores are
    >= 0, other scorers need not be); ``-0.0`` ties with ``+0.0``; ``+inf`` is the largest score.

    Memory: no concatenation; the extra memory is the returned masks (``N`` bytes) plus chunk-sized
    temporaries (see the module docstring). Each mask lives on its score tensor's device.

    Sharded (``DTensor``) scores give masks sharded the same way, equal to the single-process masks
    of the full scores (see the module docstring); every process must call this with its shards.

    Raises :class:`UserInputError` if ``ratio`` is not in (0, 1], ``scores`` is empty, a tensor is not
    floating point, or a tensor holds NaN (the message names the tensor).
    """
    k, total = validate_ratio(scores, ratio)
    sharded = _check_sharding(scores)
    hist_hi, signed, nan = _high_histogram(scores)  # (65536,) counts of (key >> 16) + 32768
    if sharded:  # every process raises together, and all count the same global histogram
        nan, hist_hi = all_reduce_sum(nan), all_reduce_sum(hist_hi)
    if nan.any():
        raise UserInputError(f"scores[{list(scores)[int(np.argmax(nan > 0))]!r}]: contains NaN (expected real-valued scores)")
    if k == 0 or k == total:
        return {name: shard_like(torch.full(local(s).shape, k == total, dtype=torch.bool, device=s.device), s)
                for name, s in scores.items()}

    bucket, above_bucket = _find_bucket(hist_hi, k)
    hist_lo = _low_histogram(scores, bucket, signed)  # (65536,) counts of key & 0xFFFF in the bucket
    if sharded:
        hist_lo = all_reduce_sum(hist_lo)
    low, above_low = _find_bucket(hist_lo, k - above_bucket)
    threshold = (bucket - _HALF) * _BINS + low  # the k-th largest key
    ties_to_take = k - above_bucket - above_low  # >= 1 entries equal to the threshold
    if sharded:
        return _build_sharded_masks(scores, threshold, ties_to_take, signed)
    return _build_masks(scores, threshold, ties_to_take, signed)


def mask_fraction(masks: dict[str, torch.Tensor]) -> float:
    """Selected fraction ``sum_i m_i / N`` over all masks (0.0 when they hold no element; global when sharded)."""
    if not masks:
        raise UserInputError("masks: expected at least one mask tensor, got an empty dict")
    selected, total = global_count(masks)
    return selected / total if total else 0.0


# --- helpers -------------------------------------------------------------------------------------


def validate_ratio(scores: dict[str, torch.Tensor], ratio: float) -> tuple[int, int]:
    """Check the scores and the ratio; return ``(k, N)``: how many entries to select of how many."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not math.isfinite(ratio):
        raise UserInputError(f"ratio: expected a number in (0, 1], got {ratio!r}")
    if not 0.0 < ratio <= 1.0:
        raise UserInputError(f"ratio: expected a number in (0, 1], got {ratio!r}")
    if not scores:
        raise UserInputError("scores: expected at least one score tensor, got an empty dict")
    for name, s in scores.items():
        if not isinstance(s, torch.Tensor) or not s.is_floating_point():
            kind = s.dtype if isinstance(s, torch.Tensor) else type(s).__name__
            raise UserInputError(f"scores[{name!r}]: expected a floating-point tensor, got {kind}")
    total = sum(s.numel() for s in scores.values())  # a DTensor's numel is the full tensor's
    return round(ratio * total), total


def _check_sharding(scores: dict[str, torch.Tensor]) -> bool:
    """True when the scores are FSDP2 shards; all or none must be."""
    sharded = [is_sharded(s) for s in scores.values()]
    if any(sharded) and not all(sharded):
        raise UserInputError("scores: expected all tensors sharded (DTensor) or none, got a mix")
    for name, s in scores.items() if all(sharded) else ():
        check_layout(f"scores[{name!r}]", s)
    return all(sharded)


# Chunks are int32 arrays: numpy views for CPU tensors, torch tensors elsewhere (CUDA). On CPU,
# numpy's single-threaded kernels avoid torch's intra-op parallel regions, which cost up to ~10 ms each
# on oversubscribed cores (about 9 per chunk here; see bench/bench_selection.py). The code below only
# uses operations that mean the same for both: >>, &, +=, comparisons, boolean indexing, sum, cumsum.
Array = np.ndarray | torch.Tensor


def _chunks(scores: dict[str, torch.Tensor]) -> Iterator[tuple[str, int, Array]]:
    """Yield ``(name, start, bits)``: int32 bit patterns of fp32 pieces of every tensor, in order."""
    for name, s in scores.items():
        flat = local(s).detach().reshape(-1)  # (n,) a view when contiguous (this process's shard if sharded)
        for start in range(0, flat.numel(), _CHUNK):
            bits = flat[start : start + _CHUNK].float().contiguous().view(torch.int32)  # (c,) no copy if fp32
            yield name, start, _host_view(bits)


def _keys(bits: Array, has_sign_bit: bool) -> Array:
    """fp32 bits -> int32 keys with the float order: bits for x >= 0, -bits(|x|) for x < 0 (-0.0 -> 0)."""
    if not has_sign_bit:
        return bits
    key = bits & 0x7FFFFFFF  # (c,) bits of |x|
    negative = bits < 0  # sign bit set
    key[negative] = -key[negative]
    return key


def _high_histogram(scores: dict[str, torch.Tensor]) -> tuple[np.ndarray, set[tuple[str, int]], np.ndarray]:
    """Pass 1: histogram of ``(key >> 16) + 32768``; also the NaN check and the chunks with a sign bit.

    The common case (no sign bit set) needs no key transform: the raw bit patterns are the keys. The
    raw histogram tells whether a chunk has a sign bit (bins < 32768) or NaN (bins beyond +-inf).
    Returns ``(hist, signed chunks, nan)``: ``nan[i] = 1`` when tensor ``i`` holds NaN (the scan
    stops at the first one; the caller raises, on every process at once when sharded).
    """
    hist = np.zeros(_BINS, dtype=np.int64)
    signed: set[tuple[str, int]] = set()
    index = {name: i for i, name in enumerate(scores)}
    nan = np.zeros(len(scores), dtype=np.int64)
    for name, start, bits in _chunks(scores):
        counts = _high_counts(bits)  # raw bit patterns
        if counts[_NAN_BINS].any() or (counts[_INF_BINS].any() and bool(((bits & 0x7FFFFFFF) > 0x7F800000).any())):
            nan[index[name]] = 1
            break
        if counts[:_HALF].any():  # some x < 0 (or -0.0): count the sign-corrected keys instead
            signed.add((name, start))
            counts = _high_counts(_keys(bits, True))
        hist += counts
    return hist, signed, nan


def _high_counts(key: Array) -> np.ndarray:
    high = key >> 16  # (c,) in [-32768, 32768)
    high += _HALF
    return _bincount(high)


def _low_histogram(scores: dict[str, torch.Tensor], bucket: int, signed: set[tuple[str, int]]) -> np.ndarray:
    """Pass 2: histogram of ``key & 0xFFFF`` over the keys whose high half is ``bucket - 32768``."""
    hist = np.zeros(_BINS, dtype=np.int64)
    for name, start, bits in _chunks(scores):
        key = _keys(bits, (name, start) in signed)
        hist += _bincount(key[(key >> 16) == bucket - _HALF] & 0xFFFF)  # (c',) in [0, 65536)
    return hist


def _bincount(values: Array) -> np.ndarray:
    """(65536,) int64 counts of ``values`` in [0, 65536), on the host."""
    if isinstance(values, np.ndarray):
        return np.bincount(values, minlength=_BINS)
    return torch.bincount(values, minlength=_BINS).cpu().numpy()


def _find_bucket(hist: np.ndarray, k: int) -> tuple[int, int]:
    """The bin holding the k-th largest entry (k >= 1) and how many entries lie in higher bins."""
    from_top = np.cumsum(hist[::-1])  # (65536,) entries in the top j+1 bins
    j = int(np.searchsorted(from_top, k, side="left"))
    return _BINS - 1 - j, int(from_top[j] - hist[_BINS - 1 - j])


def _build_masks(
    scores: dict[str, torch.Tensor], threshold: int, ties_to_take: int, signed: set[tuple[str, int]]
) -> dict[str, torch.Tensor]:
    """Pass 3: ``key > threshold`` plus the first ``ties_to_take`` keys equal to it, in order."""
    # Every element is written below, so no zero-fill is needed.
    masks = {name: torch.empty(s.shape, dtype=torch.bool, device=s.device) for name, s in scores.items()}
    for name, start, bits in _chunks(scores):
        key = _keys(bits, (name, start) in signed)
        out = _host_view(masks[name].view(-1))[start : start + len(key)]  # (c,) view into the mask
        out[...] = key > threshold
        if ties_to_take > 0:
            ties_to_take -= _take_first_ties(out, key == threshold, ties_to_take)
    return masks


def _take_first_ties(out: Array, equal: Array, wanted: int) -> int:
    """``out |= `` the first ``wanted`` True entries of ``equal`` (flat order); returns how many were set."""
    found = int(equal.sum())
    if found > wanted:
        equal &= equal.cumsum(0) <= wanted
        found = wanted
    out |= equal
    return found


def _build_sharded_masks(
    scores: dict[str, torch.Tensor], threshold: int, ties_to_take: int, signed: set[tuple[str, int]]
) -> dict[str, torch.Tensor]:
    """Pass 3 on local shards; the ties are taken in the global (tensor, rank = row range) order."""
    rank = rank_and_world_size()[0]
    index = {name: i for i, name in enumerate(scores)}
    masks = {name: torch.empty(local(s).shape, dtype=torch.bool, device=s.device) for name, s in scores.items()}
    ties = np.zeros(len(scores), dtype=np.int64)  # (T,) entries equal to the threshold per local shard
    for name, start, bits in _chunks(scores):
        key = _keys(bits, (name, start) in signed)
        out = _host_view(masks[name].view(-1))[start : start + len(key)]  # (c,)
        out[...] = key > threshold
        ties[index[name]] += int((key == threshold).sum())
    counts = all_gather_counts(ties)  # (W, T): ties of process r's shard of tensor t
    # Ties before shard (t, rank): all shards of tensors < t, then the shards of t on lower ranks.
    before = np.concatenate([[0], np.cumsum(counts.sum(axis=0))[:-1]]) + counts[:rank].sum(axis=0)  # (T,)
    take = np.clip(ties_to_take - before, 0, counts[rank])  # (T,) ties this process selects per tensor
    for name in (n for n in scores if take[index[n]] > 0):
        wanted = int(take[index[name]])
        for _, start, bits in _chunks({name: scores[name]}):
            key = _keys(bits, (name, start) in signed)
            out = _host_view(masks[name].view(-1))[start : start + len(key)]
            wanted -= _take_first_ties(out, key == threshold, wanted)
            if wanted == 0:
                break
    return {name: shard_like(mask, scores[name]) for name, mask in masks.items()}


def _host_view(tensor: torch.Tensor) -> Array:
    """A CPU tensor as a numpy view sharing its memory; any other tensor as is."""
    return tensor.numpy() if tensor.device.type == "cpu" else tensor
