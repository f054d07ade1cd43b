"""Automatic σ²: the largest noise the retain set tolerates, found by a short forward-only probe.

GRIN (Anjarlekar & Pombra, arXiv 2508.06467) adds ``ε_i ~ N(0, σ²)`` to every selected weight before
masked unlearning, with one hand-picked σ². Noise is meant to push the selected weights away from the
solution that holds the forget facts; its price is the knowledge the same weights carry about the
retain set. This module measures that price and takes the largest σ² whose price stays within a
tolerance.

**The probe.** :func:`~grin_unlearn.noise.injection.inject_noise` draws the noise of tensor ``t`` as
``σ_t · z_t`` with ``z_t`` fixed by the seed and the tensor's name, so for one seed the candidates
``v`` of σ² perturb the weights along one fixed direction, ``θ(v) = θ + √v · c_t · z`` (``c_t = 1`` in
``absolute`` mode, ``c_t = std(θ_t)`` in ``relative`` mode, i.e. σ² scaled to each tensor's weight
spread). With ``L(v)`` the mean answer-token NLL of a retain probe set (``PROBE_EXAMPLES`` retain
records drawn with the seed) at ``θ(v)``, and ``L_0 = L(0)``,

    σ²* = max { v in [lo, hi] : L(v) <= L_0 + τ },

found by bisection on ``log10 v`` (``STEPS`` evaluations; ``L`` grows with ``v`` along the ray, up to
sampling noise, and bisection returns the boundary it brackets). ``τ`` is in nats per answer token:
``τ = ln(1 / (1 − q))`` allows the geometric-mean probability of the retain answer tokens to fall by at
most the share ``q`` (:data:`DEFAULT_TOLERANCE`: q = 0.1). If ``L(lo)`` already exceeds the bound, no
noise is tolerated and σ²* = 0; if ``L(hi)`` is within it, σ²* = ``hi``.

Cost: ``STEPS + 1`` forward passes over ``PROBE_EXAMPLES`` examples, plus one copy of the selected
tensors to restore them after each candidate (the model leaves the probe bit-identical). This is our
design, not the paper's; the paper's σ² = 1e-3 is one fixed point on the same axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..data.formatting import PadCollator, PromptFormat, encode_training_records
from ..errors import UserInputError
from ..logprobs import IGNORE_INDEX
from ..models import model_device, pad_token_id
from .injection import inject_noise
from ..scoring.gradients import batch_loss, subsample

PROBE_EXAMPLES = 64
STEPS = 12
DEFAULT_TOLERANCE = math.log(1 / (1 - 0.1))  # nats/token: retain answer-token probability falls ≤ 10 %
SEARCH_RANGE = {"absolute": (1e-8, 1.0), "relative": (1e-6, 10.0)}


@dataclass
class NoiseProbeResult:
    """The chosen σ² and the probe's evidence: ``points`` are ``[v, L(v)]`` in evaluation order."""

    noise_var: float
    mode: str
    tolerance: float
    base_loss: float
    points: list[list[float]] = field(default_factory=list)
    reason: str = ""

    def evidence(self) -> dict:
        return {"method": "largest sigma^2 with retain NLL <= L0 + tolerance (bisection on log10 sigma^2)",
                "noise_var": self.noise_var, "noise_mode": self.mode, "tolerance_nats": self.tolerance,
                "retain_nll_before_noise": self.base_loss, "probe": self.points, "reason": self.reason,
                "probe_examples": PROBE_EXAMPLES}


def probe_noise_var(model, tokenizer, retain: list[dict], params: dict[str, torch.Tensor],
                    masks: dict[str, torch.Tensor], mode: str = "absolute", seed: int = 0,
                    fmt: PromptFormat | None = None, tolerance: float = DEFAULT_TOLERANCE,
                    steps: int = STEPS, batch_size: int = 16) -> NoiseProbeResult:
    """σ²* of the module docstring for the selected weights ``masks`` of ``params``; restores the weights."""
    if not retain:
        raise UserInputError("retain set: the automatic noise variance measures the retain loss, but it is empty")
    if mode not in SEARCH_RANGE:
        raise UserInputError(f"noise mode: expected one of {', '.join(SEARCH_RANGE)}, got {mode!r}")
    if not tolerance > 0:
        raise UserInputError(f"tolerance: expected a positive number of nats, got {tolerance!r}")
    examples = encode_training_records(tokenizer, subsample(retain, PROBE_EXAMPLES, seed), fmt or PromptFormat())
    batches = [PadCollator(pad_token_id(tokenizer))(examples[i : i + batch_size])
               for i in range(0, len(examples), batch_size)]
    selected = {name: params[name] for name in masks}
    saved = {name: p.detach().clone() for name, p in selected.items()}
    was_training = model.training
    model.eval()
    points: list[list[float]] = []

    def loss_at(variance: float) -> float:
        try:
            inject_noise(selected, masks, variance, mode, seed)
            value = _mean_loss(model, batches)
        finally:
            with torch.no_grad():
                for name, p in selected.items():
                    p.copy_(saved[name])
        points.append([variance, value])
        return value

    try:
        base = loss_at(0.0)
        bound = base + tolerance
        lo, hi = SEARCH_RANGE[mode]
        if loss_at(lo) > bound:
            return NoiseProbeResult(0.0, mode, tolerance, base, points, f"even σ²={lo:g} raises the retain NLL "
                                    f"above L0 + {tolerance:.3g}: no noise")
        if loss_at(hi) <= bound:
            return NoiseProbeResult(hi, mode, tolerance, base, points, f"the whole range up to σ²={hi:g} is tolerated")
        log_lo, log_hi = math.log10(lo), math.log10(hi)
        for _ in range(max(steps - 2, 0)):  # invariant: L(10^log_lo) <= bound < L(10^log_hi)
            middle = (log_lo + log_hi) / 2
            if loss_at(10 ** middle) <= bound:
                log_lo = middle
            else:
                log_hi = middle
        return NoiseProbeResult(10 ** log_lo, mode, tolerance, base, points,
                                f"bracketed in [{10 ** log_lo:.3g}, {10 ** log_hi:.3g}]")
    finally:
        model.train(was_training)


@torch.no_grad()
def _mean_loss(model, batches: list[dict]) -> float:
    """Mean answer-token NLL over ``batches``, weighted by their answer tokens."""
    device = model_device(model)
    total, tokens = 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        count = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        total += float(batch_loss(model, batch)) * count
        tokens += count
    return total / max(tokens, 1)
