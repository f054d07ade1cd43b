"""The objective interface: inputs, hyperparameters, the registry and the shared combination.

Each objective defines only its *forget term* ``ℓ_f`` as a per-example loss to minimise; the retain
term and the weighting are shared and applied by :func:`combine`:

    L = γ · mean_i ℓ_f(i) + α · mean_i ℓ_r(i)

with ``γ`` (``gamma``) the forget-term weight and ``α`` (``alpha``) the retain-term weight. The
retain term ``ℓ_r`` is the answer NLL on the retain set (``retain_loss="nll"``),
``KL(π_ref || π_θ)`` on retain answers (``retain_loss="kl"``) or the distance of the retain answers'
hidden activations to the frozen model's at the steered layer (``retain_loss="activation"``, RMU's;
:func:`~grin_unlearn.training.activations.activation_mse`). Objectives never call a model: the
trainer runs the forward passes once, scores them with
:func:`~grin_unlearn.logprobs.sequence_logprobs` / :func:`~grin_unlearn.logprobs.answer_kl` (and
captures the steered layer's output when an objective reads it), and passes the results in
:class:`ObjectiveInputs`.

The objectives themselves are in :mod:`grin_unlearn.training.objectives`. A new objective is a
function registered there with :func:`register_objective` next to its definition,
with its default hyperparameters (:class:`ObjectiveDefaults`; the source of each is cited in the
objective's docstring). Any field of :class:`ObjectiveHyperparams` left as None takes the objective's
default (:meth:`ObjectiveHyperparams.resolve`), and so do the learning rate and the number of epochs
of an :class:`~grin_unlearn.config.UnlearnConfig`.

The defaults are the references' TOFU settings (Llama-2-7B / Llama-3.2-1B fine-tuned on TOFU): the
open-unlearning reproducibility setup (``docs/repro.md``: lr 1e-5, 10 epochs, α = γ = 1, β = 0.1,
NLL retain loss) unless the method's own paper tuned it for TOFU (SimNPO). They are starting points for
LLMs of that size; a tiny model such as the embedded benchmark's needs a far larger learning rate (the
demo and the sweep configs set theirs).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TypeVar

import torch

from ..errors import UserInputError
from ..logprobs import SequenceLogProbs
from .activations import HiddenStates, activation_mse

RETAIN_LOSSES = ("nll", "kl", "activation")
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
        forget_hidden / retain_hidden: current model's activations at the steered layer (RMU).
        ref_retain_hidden: the frozen starting model's activations on the retain examples.
        control: the steering vector ``c·u`` (d,).
    """

    forget: SequenceLogProbs
    retain: SequenceLogProbs | None = None
    ref_forget: SequenceLogProbs | None = None
    refusal: SequenceLogProbs | None = None
    ref_refusal: SequenceLogProbs | None = None
    retain_kl: torch.Tensor | None = None
    forget_hidden: HiddenStates | None = None
    retain_hidden: HiddenStates | None = None
    ref_retain_hidden: HiddenStates | None = None
    control: torch.Tensor | None = None


@dataclass(frozen=True)
class ObjectiveDefaults:
    """An objective's default hyperparameters, learning rate and epochs (see :class:`ObjectiveHyperparams`)."""

    beta: float = 0.1
    delta: float = 0.0
    gamma: float = 1.0
    alpha: float = 1.0
    retain_loss: str = "nll"
    lr: float = 1e-5
    epochs: float = 10
    steering_coeff: float | None = None
    rmu_layer: int | None = None
    rmu_params: list[str] | None = None


_OBJECTIVE_DEFAULT = " (default: the objective's)"


@dataclass
class ObjectiveHyperparams:
    """Hyperparameters shared by the objectives; None means the objective's default.

    Attributes:
        beta: inverse temperature β of NPO, SimNPO and DPO; > 0.
        delta: SimNPO reward margin δ (subtracted from the mean answer NLL, as in the reference code;
            the SimNPO paper's margin γ equals β·δ); renamed to avoid clashing with gamma.
        gamma: weight γ of the forget term; >= 0.
        alpha: weight α of the retain term; >= 0. Unused by objectives without one (``ga``).
        retain_loss: ``"nll"`` (answer NLL on the retain set) or ``"kl"`` (KL to the reference).
    """

    beta: float | None = field(default=None, metadata={"help": "β of NPO, SimNPO and DPO (inverse temperature)"
                                                               + _OBJECTIVE_DEFAULT})
    delta: float | None = field(default=None, metadata={"help": "SimNPO reward margin δ on the mean answer NLL"
                                                                + _OBJECTIVE_DEFAULT})
    gamma: float | None = field(default=None, metadata={"help": "γ: weight of the forget term" + _OBJECTIVE_DEFAULT})
    alpha: float | None = field(default=None, metadata={"help": "α: weight of the retain term" + _OBJECTIVE_DEFAULT})
    retain_loss: str | None = field(default=None, metadata={
        "help": "retain term: nll (answer NLL), kl (KL to the reference) or activation (hidden states held to "
                "the reference's at the steered layer)" + _OBJECTIVE_DEFAULT})
    steering_coeff: float | None = field(default=None, metadata={
        "help": "RMU: scale c of the random direction forget activations are steered to" + _OBJECTIVE_DEFAULT})
    rmu_layer: int | None = field(default=None, metadata={
        "help": "RMU: the decoder layer whose output is steered (default: 7 of 32, at the same relative depth)"})
    rmu_params: list[str] | None = field(default=None, metadata={
        "help": "RMU: regexes (full match) of the parameters it updates (default: the MLP down projections of "
                "the steered layer and the two before it, as the WMDP paper)"})

    def __post_init__(self) -> None:
        if self.beta is not None and not self.beta > 0:
            raise UserInputError(f"beta must be > 0, got {self.beta}")
        if self.gamma is not None and not self.gamma >= 0:
            raise UserInputError(f"gamma (forget weight) must be >= 0, got {self.gamma}")
        if self.alpha is not None and not self.alpha >= 0:
            raise UserInputError(f"alpha (retain weight) must be >= 0, got {self.alpha}")
        if self.steering_coeff is not None and not self.steering_coeff > 0:
            raise UserInputError(f"steering_coeff must be > 0, got {self.steering_coeff}")
        if self.rmu_layer is not None and (isinstance(self.rmu_layer, bool) or not isinstance(self.rmu_layer, int)
                                           or self.rmu_layer < 0):
            raise UserInputError(f"rmu_layer must be a layer index >= 0, got {self.rmu_layer!r}")
        if self.retain_loss is not None and self.retain_loss not in RETAIN_LOSSES:
            raise UserInputError(
                f"retain_loss must be one of {', '.join(RETAIN_LOSSES)}, got {self.retain_loss!r}"
            )

    def resolve(self, objective: "ObjectiveSpec | str") -> "ObjectiveHyperparams":
        """A copy with every None field set to ``objective``'s default (given values are kept)."""
        spec = get_objective(objective) if isinstance(objective, str) else objective
        return ObjectiveHyperparams(**{f.name: getattr(spec.defaults, f.name) if getattr(self, f.name) is None
                                       else getattr(self, f.name) for f in fields(self)})


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
        steers: the forget term reads activations at the steered layer and the steering vector, and the
            run updates only the objective's own parameters (RMU; :mod:`.activations`).
        defaults: the default hyperparameters, learning rate and epochs (sources in the docstring).
    """

    name: str
    forget_term: ForgetTerm
    needs_reference: bool
    needs_refusal: bool
    uses_retain: bool
    defaults: ObjectiveDefaults = ObjectiveDefaults()
    steers: bool = False

    def required_inputs(self, hp: ObjectiveHyperparams) -> tuple[str, ...]:
        """Names of the :class:`ObjectiveInputs` fields this objective reads under ``hp``."""
        hp = hp.resolve(self)
        names = ["forget"]
        if self.needs_reference:
            names.append("ref_forget")
        if self.steers:
            names += ["forget_hidden", "control"]
        if self.needs_refusal:
            names.append("refusal")
            # The reference model scores every answer the objective compares against it.
            if self.needs_reference:
                names.append("ref_refusal")
        if self.uses_retain:
            names += {"nll": ["retain"], "kl": ["retain_kl"],
                      "activation": ["retain_hidden", "ref_retain_hidden"]}[hp.retain_loss]
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
    name: str, needs_reference: bool, needs_refusal: bool, uses_retain: bool = True,
    defaults: ObjectiveDefaults = ObjectiveDefaults(), steers: bool = False,
) -> Callable[[ForgetTerm], ForgetTerm]:
    """Decorator adding a forget-term function to :data:`OBJECTIVES` under ``name``, with its defaults.

    The registered ``forget_term`` fills the None fields of the hyperparameters it is given with
    ``defaults`` before calling ``fn``.
    """

    def decorator(fn: ForgetTerm) -> ForgetTerm:
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} is already registered")

        @functools.wraps(fn)
        def forget_term(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
            return fn(inputs, hp.resolve(OBJECTIVES[name]))

        OBJECTIVES[name] = ObjectiveSpec(name, forget_term, needs_reference, needs_refusal, uses_retain, defaults,
                                         steers)
        return fn

    return decorator


def get_objective(name: str) -> ObjectiveSpec:
    """Look up a registered objective; an unknown name raises :class:`UserInputError`."""
    from . import objectives  # noqa: F401  (the built-in objectives register themselves on import)

    if name not in OBJECTIVES:
        raise UserInputError(
            f"unknown objective {name!r}; expected one of: {', '.join(sorted(OBJECTIVES))}"
        )
    return OBJECTIVES[name]


def require_input(value: _T | None, field: str, objective: str) -> _T:
    """Return ``value``, or raise naming the missing input and the objective that needs it."""
    if value is None:
        raise ValueError(f"objective {objective!r} needs ObjectiveInputs.{field}, which is None")
    return value


def combine(
    spec: ObjectiveSpec, inputs: ObjectiveInputs, hp: ObjectiveHyperparams
) -> ObjectiveLoss:
    """``L = γ · mean(ℓ_f) + α · mean(ℓ_r)``, with ``ℓ_r = 0`` when ``spec.uses_retain`` is False.

    ``ℓ_r`` is ``−(1/|y|) log π_θ(y|x)`` on retain examples for ``retain_loss="nll"``, the
    per-example ``KL(π_ref || π_θ)`` for ``"kl"`` and the activations' distance to the reference's for
    ``"activation"`` (the reference averages the NLL over all answer tokens
    of the batch instead of per example first; the two agree for answers of equal length). Fields of
    ``hp`` left as None take the objective's defaults. Raises :class:`ValueError` naming any input the
    objective needs that is missing.
    """
    hp = hp.resolve(spec)
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
        retain_loss = (-require_input(inputs.retain, "retain", spec.name).mean).mean()
    elif hp.retain_loss == "activation":
        reference = require_input(inputs.ref_retain_hidden, "ref_retain_hidden", spec.name).values
        retain_loss = activation_mse(require_input(inputs.retain_hidden, "retain_hidden", spec.name), reference).mean()
    else:
        retain_loss = require_input(inputs.retain_kl, "retain_kl", spec.name).mean()
    return ObjectiveLoss(hp.gamma * forget_loss + hp.alpha * retain_loss, forget_loss, retain_loss)
