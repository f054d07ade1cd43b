"""Automatic p without a grid: the coverage of the forget gain, the forget-gain / retain-damage
balance, or the knee of the cumulative score-mass curve (Kneedle, any scorer).

GRIN (Anjarlekar & Pombra, arXiv 2508.06467) keeps the global top ``p`` fraction of weights by
influence score and leaves ``p`` to a greedy search; its first open question asks whether ``p`` can be
set automatically. This module sets it from the scores alone.

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

**The balance (GRIN's ratio, :func:`balance_ratio`).** The knee looks at the scores only. GRIN's
score ``s_i = |g_f,i| / (|g_r,i| + ε)`` comes with the gradients that made it, and the weights it ranks
are then trained with Adam. Two facts set what a masked step buys and costs:

* *Gain.* Adam's first update of a weight is ``η · g / |g|`` (its bias-corrected first moment over the
  root of its second), so every selected weight moves by the learning rate ``η`` whatever its
  gradient's size. A step along the forget gradient, restricted to the mask ``M``, raises the forget
  loss to first order by ``η Σ_{i∈M} |g_f,i|``.
* *Damage.* The target was trained on the retain set, so the retain loss sits near a minimum: its
  gradient there is small and its sign says little, and a step of size ``η`` on each weight of ``M``
  raises the retain loss to second order by ``(η²/2) Σ_{i,j∈M} H_ij σ_i σ_j`` (``σ`` the step's signs),
  about ``(η²/2) Σ_{i∈M} H_ii`` when the cross terms cancel. The diagonal of the Hessian is estimated
  by the empirical Fisher of the retain loss, ``F_i = Σ_b (∂L_b/∂θ_i)²`` over the retain batches ``b``
  (the importance EWC uses to keep a task; Kirkpatrick et al., PNAS 2017). The scoring pass already
  computes each batch's gradient, so ``F`` costs one more accumulator and no pass.

The mask is GRIN's, so the candidates are the nested top-p sets along the score order. With ``F(p)``
and ``D(p)`` the shares of the whole model's gain ``Σ |g_f|`` and damage ``Σ F_i`` held by the top-p set,

    p* = argmax_p  F(p) − D(p),

the mask that buys the most forget gain beyond its share of retain damage. Both are shares, so the
different orders in ``η`` and the batch-level scale of ``F`` cancel. ``F − D`` is computed from a
histogram of the scores over :data:`BALANCE_BINS` log-spaced bins (two streaming passes, no sort; the
selection is exactly the weights in the bins above the best cut, so top-p by score takes the same
weights). On the embedded target (forget10) it gives p ≈ 0.52, where the knee gives 0.09
(docs/tuning.md).

**The coverage (:func:`coverage_ratio`, the default of ``--ratio auto``).** The balance prices retain
damage as if nothing repaired it, but the unlearning objective carries its own retain term
(``α · mean ℓ_r``), and on the embedded benchmark model utility stays flat from p = 0.4 to 0.8 while
forgetting keeps improving (docs/tuning.md). There the mask's job is to carry the forget signal, and
the objective protects the retain set. With the same Adam-step gain ``F(p)`` (the share of ``Σ |g_f|``
held by the top-p set),

    p* = min { p : F(p) >= q },

the fewest weights (in GRIN's order) that still move the forget loss at a share ``q`` of the rate of
the unmasked model; ``q`` (``--auto-share``, default :data:`~grin_unlearn.config.DEFAULT_AUTO_SHARE`)
is a tolerance like the noise probe's, chosen on the tuner's validation authors. It needs only the
forget gradient, so any scorer that computes one (GRIN, WAGLE, forget-grad) can use it along its own
order.

Under FSDP2 every rule sums its streaming totals over the processes, so every process picks the same p.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import UserInputError
from .sharding import all_reduce_max, all_reduce_sum, is_sharded, local

# Points x of the mass-curve summary written as evidence (fractions of the eligible weights).
CURVE_POINTS = (0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
# Above this many scores the summary curve is read from a seeded uniform sample of this size (the knee
# itself is always exact).
CURVE_SAMPLE = 1 << 22
_CHUNK = 1 << 20
# Bins of the balance ratio's score histogram (log-spaced over the positive scores).
BALANCE_BINS = 1 << 14


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


@dataclass
class BalanceResult:
    """The balance ratio of GRIN scores and the evidence for it (see the module docstring).

    Attributes:
        ratio: ``p*``, the top-p cut maximising ``F(p) − D(p)``.
        selected: weights in the top-``p*`` set.
        weights: ``N``.
        forget_gain_share: ``F(p*)``, the share of ``Σ |g_f|`` the selection holds.
        retain_damage_share: ``D(p*)``, the share of the retain Fisher ``Σ F_i`` it holds.
        bins: histogram bins over the log score.
        curve: ``[[p, F(p), D(p)], ...]`` at the bin cuts nearest :data:`CURVE_POINTS`.
    """

    ratio: float
    selected: int
    weights: int
    forget_gain_share: float
    retain_damage_share: float
    bins: int
    curve: list[list[float]] = field(default_factory=list)

    def evidence(self) -> dict:
        """The JSON-ready record written into a run's ``config.json``."""
        return {"method": "balance of Adam-step forget gain and retain damage: p = the GRIN top-p cut maximising "
                          "share of sum |g_f| minus share of the retain Fisher sum (sum over batches of g_r^2)",
                "ratio": self.ratio, "selected": self.selected, "weights": self.weights,
                "forget_gain_share": self.forget_gain_share, "retain_damage_share": self.retain_damage_share,
                "bins": self.bins, "balance_curve": self.curve}


@dataclass
class CoverageResult:
    """The coverage ratio of GRIN scores and the evidence for it (see the module docstring).

    Attributes:
        ratio: ``p*``, the smallest top-p cut holding ``share`` of the forget gain.
        selected: weights in the top-``p*`` set.
        weights: ``N``.
        share: ``q``, the share of ``Σ |g_f|`` asked for.
        forget_gain_share: the share the selection holds (``>= q``, by a bin at most).
        bins: histogram bins over the log score.
    """

    ratio: float
    selected: int
    weights: int
    share: float
    forget_gain_share: float
    bins: int

    def evidence(self) -> dict:
        """The JSON-ready record written into a run's ``config.json``."""
        return {"method": "coverage of the Adam-step forget gain: p = the smallest GRIN top-p set holding a share q "
                          "of sum |g_f|", "ratio": self.ratio, "selected": self.selected, "weights": self.weights,
                "share": self.share, "forget_gain_share": self.forget_gain_share, "bins": self.bins}


def balance_ratio(scores: dict[str, torch.Tensor], forget_grads: dict[str, torch.Tensor],
                  retain_squares: dict[str, torch.Tensor], bins: int = BALANCE_BINS) -> BalanceResult:
    """The GRIN top-p cut maximising forget-gain share minus retain-damage share (module docstring).

    ``forget_grads`` is ``G_f`` and ``retain_squares`` the retain Fisher ``Σ_b (∂L_b/∂θ)²`` of the same
    tensors as ``scores`` (:class:`~grin_unlearn.scoring.InfluenceResult` with ``retain_squares=True``;
    local shards under FSDP2). Raises :class:`UserInputError` when they are missing, mismatched or not
    finite, or the forget gradient is zero everywhere.
    """
    for label, grads in (("forget gradients", forget_grads), ("retain squared gradients", retain_squares)):
        if grads is None or set(grads) != set(scores or {}):
            raise UserInputError(f"{label}: the balance ratio needs one per scored tensor "
                                 "(score with retain_squares=True)")
    count, (gain, damage) = _top_shares(scores, [(forget_grads, True), (retain_squares, False)], bins)
    best = int(np.argmax(np.where(count > 0, gain - damage, -np.inf)))
    total = int(count[-1])
    curve = []
    for x in CURVE_POINTS:
        k = min(int(np.searchsorted(count, x * total)), len(count) - 1)
        curve.append([round(float(count[k]) / total, 6), round(float(gain[k]), 6), round(float(damage[k]), 6)])
    return BalanceResult(float(count[best]) / total, int(count[best]), total, float(gain[best]), float(damage[best]),
                         bins, curve)


def coverage_ratio(scores: dict[str, torch.Tensor], forget_grads: dict[str, torch.Tensor], share: float,
                   bins: int = BALANCE_BINS) -> CoverageResult:
    """The smallest GRIN top-p set holding ``share`` of the Adam-step forget gain ``Σ |g_f|`` (module
    docstring); p rounds up to the histogram's bin cut."""
    if not 0 < share <= 1:
        raise UserInputError(f"coverage share: expected a fraction in (0, 1], got {share!r}")
    if forget_grads is None or set(forget_grads) != set(scores or {}):
        raise UserInputError("forget gradients: the coverage ratio needs one per scored tensor")
    count, (gain,) = _top_shares(scores, [(forget_grads, True)], bins)
    cut = min(int(np.searchsorted(gain, share - 1e-12)), len(gain) - 1)  # first cut with gain >= share
    total = int(count[-1])
    return CoverageResult(float(count[cut]) / total, int(count[cut]), total, share, float(gain[cut]), bins)


def _top_shares(scores: dict[str, torch.Tensor], weights: list[tuple[dict[str, torch.Tensor], bool]], bins: int
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(count, shares)`` at every cut of the score histogram, from the top: ``count[k]`` weights sit in
    the ``k + 1`` highest slots and ``shares[j][k]`` is the share of ``Σ w_j`` they hold (``w_j`` taken as
    ``|w_j|`` when its flag is True).

    Slot 0 holds the zero scores, slots 1..``bins`` the positive ones, log-spaced between the smallest
    and the largest positive score, so a cut takes exactly the weights scoring above it. Two streaming
    passes (the range, then the sums); under FSDP2 the range and the sums are reduced over the processes.
    """
    if not scores:
        raise UserInputError("scores: expected at least one score tensor, got an empty dict")
    low, high = math.inf, 0.0  # the positive score range
    for name, flat in _chunks(scores):
        if not bool(torch.isfinite(flat).all()):
            raise UserInputError(f"scores[{name!r}]: holds NaN or inf; an automatic ratio needs finite scores")
        if flat.numel() and float(flat.min()) < 0:
            raise UserInputError(f"scores[{name!r}]: an automatic ratio needs GRIN scores >= 0, got {float(flat.min())}")
        positive = flat[flat > 0]
        if positive.numel():
            low, high = min(low, float(positive.min())), max(high, float(positive.max()))
    sharded = any(is_sharded(t) for t in scores.values())
    if sharded:
        high = all_reduce_max(high)
        low = -all_reduce_max(-low)  # +inf on a process without a positive score
    slots = bins + 1
    sums, count = [np.zeros(slots) for _ in weights], np.zeros(slots)
    span = math.log(high / low) if math.isfinite(low) and high > low else 0.0
    for name in scores:
        score = local(scores[name]).detach().reshape(-1)
        columns = [(local(w[name]).detach().reshape(-1), absolute) for w, absolute in weights]
        for start in range(0, score.numel(), _CHUNK):
            s = score[start : start + _CHUNK].double()
            index = torch.zeros_like(s, dtype=torch.long)
            where = s > 0
            index[where] = 1
            if span > 0:
                index[where] += ((s[where] / low).log() / span * bins).floor().long().clamp(0, bins - 1)
            index = index.cpu()
            for total, (column, absolute) in zip(sums, columns):
                piece = column[start : start + _CHUNK].double()
                piece = piece.abs() if absolute else piece
                if not bool(torch.isfinite(piece).all()):
                    raise UserInputError(f"gradients of {name!r}: hold NaN or inf; an automatic ratio needs "
                                         "finite gradients")
                total += torch.zeros(slots, dtype=torch.float64).index_add_(0, index, piece.cpu()).numpy()
            count += np.bincount(index.numpy(), minlength=slots)
    if sharded:
        count = all_reduce_sum(count)
        sums = [all_reduce_sum(total) for total in sums]
    if int(count.sum()) == 0 or sums[0].sum() == 0.0:
        raise UserInputError("forget gradients: zero everywhere, so no weight moves the forget loss "
                             "(give the ratio as a number)")
    shares = [np.cumsum(t[::-1]) / t.sum() if t.sum() > 0 else np.zeros(slots) for t in sums]
    return np.cumsum(count[::-1]), shares


def knee_ratio(scores: dict[str, torch.Tensor], seed: int = 0) -> KneeResult:
    """The Kneedle knee of the cumulative score mass of ``scores`` (see the module docstring).

    Raises :class:`UserInputError` when the scores are empty, not finite, negative, or all equal (a
    straight mass curve has no knee: give ``--ratio`` a number).
    """
    if not scores:
        raise UserInputError("scores: expected at least one score tensor, got an empty dict")
    total, count, low = 0.0, 0, math.inf
    for name, flat in _chunks(scores):
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
    for _, flat in _chunks(scores):
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


def _chunks(scores: dict[str, torch.Tensor]):
    """``(name, fp32 piece)`` of every tensor, flat, in bounded pieces."""
    for name, tensor in scores.items():
        flat = local(tensor).detach().reshape(-1)  # (n,)
        if not flat.is_floating_point():
            raise UserInputError(f"scores[{name!r}]: expected a floating-point tensor, got {flat.dtype}")
        if flat.numel() == 0:
            yield name, flat.float()
        for start in range(0, flat.numel(), _CHUNK):
            yield name, flat[start : start + _CHUNK].float()
