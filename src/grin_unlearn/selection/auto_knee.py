"""Automatic p from the scores alone: the knee of the cumulative score-mass curve (Kneedle, any scorer).

The default rule of ``--ratio auto`` for scorers without a forget gradient (magnitude, random) and
``--auto-rule knee`` for any; the other rules are in :mod:`grin_unlearn.selection.auto_ratio`.

**The curve.** Sort the ``N`` eligible scores in decreasing order ``s_(1) >= ... >= s_(N) >= 0``,
``S = Σ_i s_i``, and let

    x_k = k / N,        y_k = (Σ_{j <= k} s_(j)) / S,        k = 0 .. N,

the share of the total score mass held by the top ``k`` weights. ``y`` rises from (0, 0) to (1, 1) and
is concave (its slope ``N s_(k) / S`` only falls). A few weights holding most of the mass make a sharp
bend: past it, each extra weight adds less than its fair share ``1/N`` of the mass.

**The knee.** Kneedle (Satopää, Albrecht, Irwin & Raghavan, "Finding a 'Kneedle' in a Haystack:
Detecting Knee Points in System Behavior", ICDCS Workshops 2011) normalises both axes to [0, 1] (they
already are) and puts the knee at the maximum of the difference curve ``d_k = y_k − x_k``, the point
of the curve farthest from the chord ``y = x`` (its distance is ``d_k / √2``). Since
``d_k − d_{k−1} = s_(k) / S − 1/N``, ``d`` grows exactly while ``s_(k) > S / N = s̄``, so

    k* = #{ i : s_i > s̄ },        p* = k* / N,

the share of weights scoring above the mean score (weights scoring exactly ``s̄`` leave ``d`` flat and
are not taken). Two streaming passes (the sum, then the count) find it: no sort and O(1) extra memory,
so it costs nothing next to the gradient passes that produced the scores. The mass at the knee,
``y_{k*}``, and a coarse summary of the curve are returned as evidence.

Departure from Kneedle: no smoothing and no online detection; the curve is exact and the global
maximum of ``d`` is the knee (Kneedle's offline case). Scores of every scorer are >= 0; a negative
score is rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserInputError
from ..parallel.sharding import all_reduce_max, all_reduce_sum, is_sharded, local

# Points x of the mass-curve summary written as evidence (fractions of the eligible weights).
CURVE_POINTS = (0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
# Above this many scores the summary curve is read from a seeded uniform sample of this size (the knee
# itself is always exact).
CURVE_SAMPLE = 1 << 22
CHUNK = 1 << 20


@dataclass
class KneeResult:
    """The automatic ratio and the evidence for it.

    Attributes:
        ratio: ``p* = k* / N``.
        selected: ``k*``, weights with a score above the mean.
        weights: ``N``.
        mean_score: ``s̄ = S / N``.
        mass_at_knee: ``y_{k*}``, the share of the score mass the selection holds.
        distance: ``(y_{k*} − x_{k*}) / √2``, the knee's distance from the chord.
        curve: ``[[x, y(x)], ...]`` at :data:`CURVE_POINTS` (from a sample when ``N`` > :data:`CURVE_SAMPLE`).
    """

    ratio: float
    selected: int
    weights: int
    mean_score: float
    mass_at_knee: float
    distance: float
    curve: list[list[float]] = field(default_factory=list)
    curve_sampled: bool = False

    def evidence(self) -> dict:
        """The JSON-ready record written into a run's ``config.json``."""
        return {"method": "kneedle on the cumulative score mass: p = share of weights scoring above the mean",
                "ratio": self.ratio, "selected": self.selected, "weights": self.weights,
                "mean_score": self.mean_score, "mass_at_knee": self.mass_at_knee,
                "distance_from_chord": self.distance, "mass_curve": self.curve,
                "mass_curve_sampled": self.curve_sampled}


def knee_ratio(scores: dict[str, torch.Tensor], seed: int = 0) -> KneeResult:
    """The Kneedle knee of the cumulative score mass of ``scores`` (see the module docstring).

    Raises :class:`UserInputError` when the scores are empty, not finite, negative, or all equal (a
    straight mass curve has no knee: give ``--ratio`` a number).
    """
    if not scores:
        raise UserInputError("scores: expected at least one score tensor, got an empty dict")
    total, count, low = 0.0, 0, math.inf
    for name, flat in score_chunks(scores):
        if not bool(torch.isfinite(flat).all()):
            raise UserInputError(f"scores[{name!r}]: holds NaN or inf; an automatic ratio needs finite scores")
        total += float(flat.sum(dtype=torch.float64))
        count += flat.numel()
        low = min(low, float(flat.min())) if flat.numel() else low
    sharded = any(is_sharded(t) for t in scores.values())
    if sharded:  # local shards under FSDP2: every process takes the mean over the whole model
        total, count = (float(v) for v in all_reduce_sum(np.array([total, count], dtype=np.float64)))
        count = int(count)
        low = -all_reduce_max(-low) if math.isfinite(low) else low
    if count == 0:
        raise UserInputError("scores: the score tensors hold no element")
    if low < 0:
        raise UserInputError(f"scores: the mass curve needs scores >= 0, got a minimum of {low}")
    mean = total / count
    selected, mass = 0, 0.0
    for _, flat in score_chunks(scores):
        above = flat > mean
        selected += int(above.sum())
        mass += float(flat[above].sum(dtype=torch.float64))
    if sharded:
        selected, mass = (float(v) for v in all_reduce_sum(np.array([selected, mass], dtype=np.float64)))
        selected = int(selected)
    if selected == 0:
        raise UserInputError("scores: every weight has the same score, so the mass curve has no knee "
                             "(give the ratio as a number)")
    ratio = selected / count
    mass_share = mass / total
    curve, sampled = mass_curve(scores, seed)
    return KneeResult(ratio, selected, count, mean, mass_share, (mass_share - ratio) / math.sqrt(2), curve, sampled)


def mass_curve(scores: dict[str, torch.Tensor], seed: int = 0,
               points: tuple[float, ...] = CURVE_POINTS) -> tuple[list[list[float]], bool]:
    """``[[x, y(x)], ...]``: the share ``y`` of the score mass held by the top ``x`` fraction of the
    weights, exact up to :data:`CURVE_SAMPLE` scores, else from a seeded uniform sample; and whether it
    was sampled. Evidence only: under FSDP2 it is the curve of this process's shards."""
    total_count = sum(local(s).numel() for s in scores.values())
    sampled = total_count > CURVE_SAMPLE
    generator = torch.Generator().manual_seed(int(seed))
    pieces = []
    for tensor in scores.values():
        flat = local(tensor).detach().reshape(-1)  # (n,) this process's rows under FSDP2
        if sampled:  # a share of the sample proportional to the tensor's size: no (N,) copy
            take = round(flat.numel() * CURVE_SAMPLE / total_count)
            flat = flat[torch.randint(flat.numel(), (take,), generator=generator).to(flat.device)]
        pieces.append(flat.float().cpu())
    flat = torch.cat(pieces)  # (n,) n = N, or about CURVE_SAMPLE when sampled
    ordered = flat.double().sort(descending=True).values  # (n,)
    cumulative = ordered.cumsum(0)
    total = float(cumulative[-1]) if ordered.numel() else 0.0
    curve = []
    for x in points:
        k = round(x * ordered.numel())
        y = float(cumulative[k - 1]) / total if k > 0 and total > 0 else 0.0
        curve.append([x, round(y, 6)])
    return curve, sampled


def score_chunks(scores: dict[str, torch.Tensor]):
    """``(name, fp32 piece)`` of every tensor, flat, in bounded pieces."""
    for name, tensor in scores.items():
        flat = local(tensor).detach().reshape(-1)  # (n,)
        if not flat.is_floating_point():
            raise UserInputError(f"scores[{name!r}]: expected a floating-point tensor, got {flat.dtype}")
        if flat.numel() == 0:
            yield name, flat.float()
        for start in range(0, flat.numel(), CHUNK):
            yield name, flat[start : start + CHUNK].float()
