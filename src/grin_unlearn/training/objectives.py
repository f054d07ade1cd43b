"""Unlearning objectives: pure functions of precomputed log-probs, one per method.

Each objective defines only its *forget term* ``ℓ_f`` as a per-example loss to minimise; the retain
term and the weighting are shared and applied by :func:`combine`:

    L = γ · mean_i ℓ_f(i) + α · mean_i ℓ_r(i)

with ``γ`` (``gamma``) the forget-term weight and ``α`` (``alpha``) the retain-term weight. The
retain term ``ℓ_r`` is either the answer NLL on the retain set (``retain_loss="nll"``) or
``KL(π_ref || π_θ)`` on retain answers (``retain_loss="kl"``). Objectives never call a model: the
trainer runs the forward passes once, scores them with
:func:`~grin_unlearn.logprobs.sequence_logprobs` / :func:`~grin_unlearn.logprobs.answer_kl`, and
passes the results in :class:`ObjectiveInputs`.

A new objective is a function registered with :func:`register_objective` next to its definition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.nn.functional as F

from ..errors import UserInputError
from ..logprobs import SequenceLogProbs

RETAIN_LOSSES = ("nll", "kl")
_T = TypeVar("_T")


@dataclass(frozen=True)
class ObjectiveInputs:
    """Per-example scores an objective may use; every tensor is (B,).

    Attributes:
        forget: current model on forget question + true answer.
        retain: current model on retain question + answer (``retain_loss="nll"``).
        ref_forget: frozen reference model (the starting model) on forget question + true answer.
        refusal: current model on forget question + refusal answer ("I don't know").
        ref_refusal: reference model on forget question + refusal answer.
        retain_kl: ``answer_kl(model, reference)`` on retain examples (``retain_loss="kl"``).
    """

    forget: SequenceLogProbs
    retain: SequenceLogProbs | None = None
    ref_forget: SequenceLogProbs | None = None
    refusal: SequenceLogProbs | None = None
    ref_refusal: SequenceLogProbs | None = None
    retain_kl: torch.Tensor | None = None


@dataclass
class ObjectiveHyperparams:
    """Hyperparameters shared by the objectives.

    Attributes:
        beta: inverse temperature β of NPO, SimNPO and DPO; > 0.
        delta: SimNPO reward margin (γ in the SimNPO paper; renamed to avoid clashing with gamma).
        gamma: weight γ of the forget term; >= 0.
        alpha: weight α of the retain term; >= 0. Unused by objectives without one (``ga``).
        retain_loss: ``"nll"`` (answer NLL on the retain set) or ``"kl"`` (KL to the reference).
    """

    beta: float = field(default=0.1, metadata={"help": "β of NPO, SimNPO and DPO (inverse temperature)"})
    delta: float = field(default=0.0, metadata={"help": "SimNPO reward margin (the SimNPO paper's γ)"})
    gamma: float = field(default=1.0, metadata={"help": "γ: weight of the forget term"})
    alpha: float = field(default=1.0, metadata={"help": "α: weight of the retain term"})
    retain_loss: str = field(default="nll", metadata={"help": "retain term: nll (answer NLL) or kl (KL to the reference)"})

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise UserInputError(f"beta must be > 0, got {self.beta}")
        if not self.gamma >= 0:
            raise UserInputError(f"gamma (forget weight) must be >= 0, got {self.gamma}")
        if not self.alpha >= 0:
            raise UserInputError(f"alpha (retain weight) must be >= 0, got {self.alpha}")
        if self.retain_loss not in RETAIN_LOSSES:
            raise UserInputError(
                f"retain_loss must be one of {', '.join(RETAIN_LOSSES)}, got {self.retain_loss!r}"
            )


ForgetTerm = Callable[[ObjectiveInputs, ObjectiveHyperparams], torch.Tensor]


@dataclass(frozen=True)
class ObjectiveSpec:
    """A registered objective.

    Attributes:
        name: registry key.
        forget_term: ``(inputs, hp) -> (B,)`` per-example forget loss to minimise.
        needs_reference: scores from the frozen reference model are required.
        needs_refusal: scores of a refusal answer to each forget question are required.
        uses_retain: the objective has a retain term weighted by ``alpha``.
    """

    name: str
    forget_term: ForgetTerm
    needs_reference: bool
    needs_refusal: bool
    uses_retain: bool

    def required_inputs(self, hp: ObjectiveHyperparams) -> tuple[str, ...]:
        """Names of the :class:`ObjectiveInputs` fields this objective reads under ``hp``."""
        names = ["forget"]
        if self.needs_reference:
            names.append("ref_forget")
        if self.needs_refusal:
            names.append("refusal")
            # The reference model scores every answer the objective compares against it.
            if self.needs_reference:
                names.append("ref_refusal")
        if self.uses_retain:
            names.append("retain" if hp.retain_loss == "nll" else "retain_kl")
        return tuple(names)


@dataclass(frozen=True)
class ObjectiveLoss:
    """Result of :func:`combine`: scalars.

    Attributes:
        loss: ``γ · forget_loss + α · retain_loss``, the value to minimise.
        forget_loss: unweighted mean forget term.
        retain_loss: unweighted mean retain term (0 when the objective has none).
    """

    loss: torch.Tensor
    forget_loss: torch.Tensor
    retain_loss: torch.Tensor


OBJECTIVES: dict[str, ObjectiveSpec] = {}


def register_objective(
    name: str, needs_reference: bool, needs_refusal: bool, uses_retain: bool = True
) -> Callable[[ForgetTerm], ForgetTerm]:
    """Decorator adding a forget-term function to :data:`OBJECTIVES` under ``name``."""

    def decorator(fn: ForgetTerm) -> ForgetTerm:
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} is already registered")
        OBJECTIVES[name] = ObjectiveSpec(name, fn, needs_reference, needs_refusal, uses_retain)
        return fn

    return decorator


def get_objective(name: str) -> ObjectiveSpec:
    """Look up a registered objective; an unknown name raises :class:`UserInputError`."""
    if name not in OBJECTIVES:
        raise UserInputError(
            f"unknown objective {name!r}; expected one of: {', '.join(sorted(OBJECTIVES))}"
        )
    return OBJECTIVES[name]


def _need(value: _T | None, field: str, objective: str) -> _T:
    """Return ``value``, or raise naming the missing input and the objective that needs it."""
    if value is None:
        raise ValueError(f"objective {objective!r} needs ObjectiveInputs.{field}, which is None")
    return value


@register_objective("ga", needs_reference=False, needs_refusal=False, uses_retain=False)
def gradient_ascent(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Gradient ascent on the forget set.

    Jang et al., "Knowledge Unlearning for Mitigating Privacy Risks in Language Models",
    arXiv 2210.01504; the GA baseline of TOFU (Maini et al., arXiv 2401.06121):
    ``ℓ_f = −NLL(y|x) = (1/|y|) Σ_t log π_θ(y_t | x, y_<t)``; minimising it raises the NLL of
    forget answers. GA has no retain term (``alpha`` is ignored).
    """
    return inputs.forget.mean


@register_objective("graddiff", needs_reference=False, needs_refusal=False)
def grad_diff(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Gradient difference (TOFU, Maini et al., arXiv 2401.06121).

    ``L = γ · (−NLL_forget) + α · ℓ_r``: gradient ascent on the forget set plus the retain term;
    the forget term is the same as :func:`gradient_ascent`.
    """
    return inputs.forget.mean


@register_objective("npo", needs_reference=True, needs_refusal=False)
def npo(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Negative Preference Optimization.

    Zhang et al., "Negative Preference Optimization: From Catastrophic Collapse to Effective
    Unlearning", arXiv 2404.05868:
    ``L_NPO = −(2/β) · log σ(−β · log(π_θ(y|x) / π_ref(y|x)))``
    with sequence log-probs (summed over answer tokens). As β → 0 its gradient tends to that of
    gradient ascent on the summed log-prob.
    """
    ref = _need(inputs.ref_forget, "ref_forget", "npo")
    log_ratio = inputs.forget.sum - ref.sum  # (B,)
    return -(2.0 / hp.beta) * F.logsigmoid(-hp.beta * log_ratio)


@register_objective("simnpo", needs_reference=False, needs_refusal=False)
def simnpo(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Simple NPO: reference-free, length-normalised NPO.

    Fan et al., "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
    Unlearning", arXiv 2410.07163:
    ``L_SimNPO = −(2/β) · log σ(−(β/|y|) · log π_θ(y|x) − γ)``.
    The paper's margin γ is ``hp.delta`` here (``gamma`` is the forget weight).
    """
    return -(2.0 / hp.beta) * F.logsigmoid(-hp.beta * inputs.forget.mean - hp.delta)


@register_objective("po", needs_reference=False, needs_refusal=True)
def preference_optimization(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Preference optimisation towards a refusal ("I don't know").

    TOFU (Maini et al., arXiv 2401.06121), "Preference Optimization", and the PO base objective of
    GRIN (arXiv 2508.06467): fine-tune on forget questions paired with a refusal answer ``y_idk``,
    ``ℓ_f = NLL(y_idk|x) = −(1/|y_idk|) Σ_t log π_θ(y_idk,t | x, y_idk,<t)``.
    """
    refusal = _need(inputs.refusal, "refusal", "po")
    return -refusal.mean


@register_objective("idkdpo", needs_reference=True, needs_refusal=True)
def idk_dpo(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """DPO with the refusal as the preferred answer and the true answer as the rejected one.

    Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward
    Model", arXiv 2305.18290, eq. (7):
    ``L_DPO = −log σ(β · log(π_θ(y_w|x)/π_ref(y_w|x)) − β · log(π_θ(y_l|x)/π_ref(y_l|x)))``
    with ``y_w`` the refusal and ``y_l`` the true forget answer, sequence (summed) log-probs.
    """
    refusal = _need(inputs.refusal, "refusal", "idkdpo")
    ref_refusal = _need(inputs.ref_refusal, "ref_refusal", "idkdpo")
    ref_forget = _need(inputs.ref_forget, "ref_forget", "idkdpo")
    chosen = refusal.sum - ref_refusal.sum  # (B,)
    rejected = inputs.forget.sum - ref_forget.sum  # (B,)
    return -F.logsigmoid(hp.beta * (chosen - rejected))


def combine(
    spec: ObjectiveSpec, inputs: ObjectiveInputs, hp: ObjectiveHyperparams
) -> ObjectiveLoss:
    """``L = γ · mean(ℓ_f) + α · mean(ℓ_r)``, with ``ℓ_r = 0`` when ``spec.uses_retain`` is False.

    ``ℓ_r`` is ``−(1/|y|) log π_θ(y|x)`` on retain examples for ``retain_loss="nll"`` and the
    per-example ``KL(π_ref || π_θ)`` for ``"kl"``. Raises :class:`ValueError` naming any input the
    objective needs that is missing.
    """
    missing = [f for f in spec.required_inputs(hp) if getattr(inputs, f) is None]
    if missing:
        raise ValueError(
            f"objective {spec.name!r} is missing required input(s) {', '.join(missing)} "
            "(ObjectiveInputs fields left as None)"
        )
    forget_loss = spec.forget_term(inputs, hp).mean()
    if not spec.uses_retain:
        retain_loss = torch.zeros((), dtype=forget_loss.dtype, device=forget_loss.device)
        return ObjectiveLoss(hp.gamma * forget_loss, forget_loss, retain_loss)
    if hp.retain_loss == "nll":
        retain_loss = (-_need(inputs.retain, "retain", spec.name).mean).mean()
    else:
        retain_loss = _need(inputs.retain_kl, "retain_kl", spec.name).mean()
    return ObjectiveLoss(hp.gamma * forget_loss + hp.alpha * retain_loss, forget_loss, retain_loss)
