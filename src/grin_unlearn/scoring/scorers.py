"""Per-weight influence scorers: GRIN's gradient ratio and the baselines, in one registry.

A scorer maps a :class:`ScoringContext` (the eligible parameters and the signed fp32 full-set
gradients ``G_f``, ``G_r`` of :mod:`grin_unlearn.scoring.gradients`) to one fp32 score tensor ``>= 0``
per parameter; selection keeps the global top ``p`` of them. Add a scorer with
:func:`register_scorer` next to its definition; the pipeline runs only the gradient passes it needs.

Under FSDP2 the parameters and gradients are ``DTensor``s sharded by rows; the elementwise scorers
below then compute each process's rows only (DTensor runs the same ops on the local shard), and a
scorer that draws or builds a full tensor must return it placed like the parameter
(:func:`~grin_unlearn.parallel.sharding.shard_of`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import UserInputError
from ..seeding import named_generator
from ..parallel.sharding import is_sharded, shard_of

Grads = dict[str, torch.Tensor]

# Absolute eps of the GRIN ratio. Measured |G_r| of the built-in model (random init, retain90 of a
# 20-author world, batch 8): 0.1% quantile 7e-6, 1% quantile 8e-5, median 1e-2, no exact zero. So
# 1e-8 changes |G_f| / |G_r| by < 0.2% for 99.9% of weights and only keeps the ratio finite where the
# retain set does not move a weight at all (|G_r| == 0). A larger eps pulls the ranking towards the
# `forget-grad` scorer. Trained and larger models have smaller per-weight gradients: check the low
# quantiles of InfluenceResult.retain_grads and lower eps if they approach 1e-8.
DEFAULT_EPS = 1e-8
# WAGLE's mu: the diagonal-Hessian constant (1/mu acts as a step size on the retain gradient). 1e-6 is
# the `mu` of the TOFU configs in public WAGLE code; there G_r / mu dominates theta, so the score is
# close to |G_r ⊙ G_f| / mu.
DEFAULT_WAGLE_MU = 1e-6


@dataclass
class ScoringContext:
    """What a scorer reads: the eligible ``params``, signed fp32 ``forget_grads`` (``G_f``) and
    ``retain_grads`` (``G_r``) (None unless its spec needs them), GRIN's ``eps``, the ``random``
    scorer's ``seed``, WAGLE's ``wagle_mu``, and the ``device`` for gradient-free scores (default:
    each parameter's device)."""

    params: dict[str, torch.Tensor]
    forget_grads: Grads | None = None
    retain_grads: Grads | None = None
    eps: float = DEFAULT_EPS
    seed: int = 0
    wagle_mu: float = DEFAULT_WAGLE_MU
    device: str | torch.device | None = None

    def forget(self) -> Grads:
        return _required(self.forget_grads, "forget")

    def retain(self) -> Grads:
        return _required(self.retain_grads, "retain")


def _required(grads: Grads | None, which: str) -> Grads:
    if grads is None:  # a programming error in a scorer's registration, not a user input error
        raise RuntimeError(f"this scorer reads {which} gradients: register it with needs_{which}=True")
    return grads


Scorer = Callable[[ScoringContext], Grads]


@dataclass(frozen=True)
class ScorerSpec:
    """A registered scorer and which gradient passes it needs (the pipeline runs only those)."""

    name: str
    fn: Scorer
    needs_forget: bool
    needs_retain: bool

    def __call__(self, ctx: ScoringContext) -> Grads:
        return self.fn(ctx)


SCORERS: dict[str, ScorerSpec] = {}


def register_scorer(name: str, *, needs_forget: bool, needs_retain: bool) -> Callable[[Scorer], Scorer]:
    """Decorator adding a scorer ``(ctx) -> {name: fp32 scores >= 0}`` to :data:`SCORERS`."""

    def decorate(fn: Scorer) -> Scorer:
        if name in SCORERS:
            raise ValueError(f"scorer {name!r} is already registered")
        SCORERS[name] = ScorerSpec(name, fn, needs_forget, needs_retain)
        return fn

    return decorate


def get_scorer(name: str) -> ScorerSpec:
    """The scorer registered as ``name``; :class:`UserInputError` listing the valid names otherwise."""
    if name not in SCORERS:
        raise UserInputError(f"scorer: unknown name {name!r}; expected one of {', '.join(sorted(SCORERS))}")
    return SCORERS[name]


@register_scorer("grin", needs_forget=True, needs_retain=True)
def grin_scores(ctx: ScoringContext) -> Grads:
    """GRIN gradient ratio (arXiv 2508.06467): ``s_i = |G_f[i]| / (|G_r[i]| + eps)``.

    High for weights the forget set pulls on and the retain set does not. ``eps`` defaults to the
    absolute :data:`DEFAULT_EPS` = 1e-8 (see the comment there: negligible against typical fp32
    ``|G_r|`` of mean-NLL gradients, it only guards ``|G_r| == 0``); it is a parameter, not a
    fraction of the gradient scale.
    """
    gf, gr = ctx.forget(), ctx.retain()
    return {key: gf[key].abs().div_(gr[key].abs().add_(ctx.eps)) for key in gf}


@register_scorer("forget-grad", needs_forget=True, needs_retain=False)
def forget_grad_scores(ctx: ScoringContext) -> Grads:
    """Gradient saliency ``s_i = |G_f[i]|`` (SalUn: Fan et al., "SalUn: Empowering Machine Unlearning
    via Gradient-based Weight Saliency in Both Image Classification and Generation", arXiv 2310.12508).

    Departure: SalUn thresholds the saliency per model with a hard threshold; here the pipeline takes
    the global top ``p`` like every other scorer, and ``G_f`` is the gradient of the NLL (SalUn uses the
    forgetting loss, the negative of it; the absolute value is the same).
    """
    return {key: g.abs() for key, g in ctx.forget().items()}


@register_scorer("magnitude", needs_forget=False, needs_retain=False)
def magnitude_scores(ctx: ScoringContext) -> Grads:
    """Weight magnitude ``s_i = |theta_i|`` (the data-free pruning baseline)."""
    return {key: p.detach().abs().float().to(ctx.device or p.device) for key, p in ctx.params.items()}


@register_scorer("random", needs_forget=False, needs_retain=False)
def random_scores(ctx: ScoringContext) -> Grads:
    """``s_i ~ U[0, 1)`` i.i.d.: the random-selection baseline.

    Drawn in fp32 on the CPU from :func:`~grin_unlearn.seeding.named_generator` of ``(seed, name)``, so a
    tensor's scores depend only on the seed and its name (not on the device or the other tensors).
    Sharded parameters: each process draws the whole tensor (one at a time) and keeps its rows.
    """
    scores = {}
    for key, p in ctx.params.items():
        generator = named_generator(f"{ctx.seed}:{key}")
        drawn = torch.rand(p.shape, generator=generator, dtype=torch.float32)
        scores[key] = shard_of(drawn, p) if is_sharded(p) else drawn.to(ctx.device or p.device)
    return scores


@register_scorer("wagle", needs_forget=True, needs_retain=True)
def wagle_scores(ctx: ScoringContext) -> Grads:
    """WAGLE weight attribution ``s_i = |(theta_i - G_r[i] / mu) · G_f[i]|`` (Jia et al., "WAGLE:
    Strategic Weight Attribution for Effective and Modular Unlearning in Large Language Models",
    arXiv 2410.17509).

    The paper approximates the retain-loss Hessian by ``mu·I`` (diagonal); ``mu`` is ``wagle_mu``
    (default :data:`DEFAULT_WAGLE_MU`). Same form as the public WAGLE code (which negates the score
    and selects the lowest, i.e. the same weights). ``theta`` is taken in fp32.
    """
    gf, gr = ctx.forget(), ctx.retain()
    scores = {}
    for key, p in ctx.params.items():
        theta = p.detach().to(device=gf[key].device, dtype=torch.float32)
        scores[key] = (theta - gr[key] / ctx.wagle_mu).mul_(gf[key]).abs_()
    return scores
