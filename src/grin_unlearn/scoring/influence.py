"""GRIN step 1 as one call: gradients of the passes a scorer needs, then its per-weight scores.

GRIN (Anjarlekar & Pombra, "LLM Unlearning using Gradient Ratio-Based Influence Estimation and Noise
Injection", arXiv 2508.06467): ``s_i = |G_f[i]| / (|G_r[i]| + eps)`` over the eligible weights.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

import torch

from ..data.formatting import PromptFormat
from ..errors import UserInputError
from .eligibility import eligible_parameters
from .gradients import Grads, accumulate_gradients, check_accumulator_device, subsample
from .scorers import DEFAULT_EPS, DEFAULT_WAGLE_MU, ScoringContext, get_scorer


@dataclass
class InfluenceResult:
    """Per-weight scores and the gradients they came from.

    Attributes:
        scorer: registry name of the scorer.
        scores: fp32, >= 0, one tensor per eligible parameter (selection order).
        forget_grads: ``G_f`` (signed fp32), None if the scorer did not need it.
        retain_grads: ``G_r`` (signed fp32), None if the scorer did not need it.
        retain_squares: ``S_r = Σ_batches (∇θ L_batch)²`` over the retain batches, the batch-level diagonal
            empirical Fisher of the retain loss (fp32); only when asked for (``retain_squares=True``).
        timing: seconds per pass: ``forget``, ``retain`` (only passes that ran) and ``score``.
        examples: number of examples each pass used (``retain`` after ``retain_samples``).
    """

    scorer: str
    scores: Grads
    forget_grads: Grads | None = None
    retain_grads: Grads | None = None
    timing: dict[str, float] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)
    retain_squares: Grads | None = None


def score_influence(
    model, tokenizer, forget_records: list[dict], retain_records: list[dict], scorer: str = "grin",
    fmt: PromptFormat | None = None, include: list[str] | None = None, exclude: list[str] | None = None,
    eps: float = DEFAULT_EPS, retain_samples: int | None = None, batch_size: int = 8, seed: int = 0,
    wagle_mu: float = DEFAULT_WAGLE_MU, accumulator_device: str | torch.device | None = None,
    params: dict[str, torch.nn.Parameter] | None = None, retain_squares: bool = False,
) -> InfluenceResult:
    """Score every eligible weight of ``model`` with the registered ``scorer`` (GRIN step 1).

    Runs only the gradient passes the scorer needs: ``G_f`` over all ``forget_records``, ``G_r`` over
    ``retain_samples`` of the ``retain_records`` (all when None; subsampled with ``seed``). The
    eligible weights are ``params`` when the caller has already decided them, else
    :func:`~grin_unlearn.scoring.eligibility.eligible_parameters` with ``include``/``exclude``.
    Scorer ``none`` (full fine-tuning) is not a scorer: the pipeline skips this step for it.
    ``retain_squares`` also keeps the retain pass's squared batch gradients (the automatic ratio's
    damage measure, :func:`~grin_unlearn.selection.auto_ratio.balance_ratio`) at the cost of one more accumulator.
    """
    spec = get_scorer(scorer)
    _check_positive("eps", eps)
    _check_positive("wagle_mu", wagle_mu)
    if params is None:
        params = eligible_parameters(model, include, exclude)
    check_accumulator_device(params, accumulator_device)
    fmt = fmt or PromptFormat()
    timing: dict[str, float] = {}
    examples: dict[str, int] = {}
    grads: dict[str, Grads | None] = {"forget": None, "retain": None}
    squares: Grads | None = {} if retain_squares and spec.needs_retain else None
    subsample([], retain_samples, seed)  # validates retain_samples before any pass runs
    passes = [("forget", forget_records, None, spec.needs_forget),
              ("retain", retain_records, retain_samples, spec.needs_retain)]
    for which, records, max_samples, needed in passes:
        if not needed:
            continue
        start = time.perf_counter()
        grads[which] = accumulate_gradients(model, tokenizer, records, fmt, params, batch_size=batch_size,
                                            max_samples=max_samples, seed=seed, desc=f"{which} set",
                                            accumulator_device=accumulator_device,
                                            squares_out=squares if which == "retain" else None)
        timing[which] = time.perf_counter() - start
        examples[which] = len(records) if max_samples is None else min(len(records), max_samples)
    start = time.perf_counter()
    ctx = ScoringContext(params, grads["forget"], grads["retain"], eps=eps, seed=seed, wagle_mu=wagle_mu,
                         device=accumulator_device)
    with torch.no_grad():
        scores = spec(ctx)
    timing["score"] = time.perf_counter() - start
    return InfluenceResult(scorer, scores, grads["forget"], grads["retain"], timing, examples, squares)


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise UserInputError(f"{name}: expected a positive finite number, got {value!r}")
