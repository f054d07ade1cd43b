"""Hidden activations for representation-level objectives (RMU): where to read them, the loss on them,
and which weights such an objective updates.

RMU (Li et al. 2024, "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning", arXiv
2403.03218, Sec. 5) steers the residual stream of a forget example at one decoder layer ``ℓ`` (the
output of ``model.layers.ℓ``) towards a fixed random direction ``c·u`` and holds a retain example's
activations to the frozen model's:

``ℓ_f(i) = (1/|A_i|) Σ_{t∈A_i} (1/d) ‖h_θ^ℓ(x_i)_t − c·u‖²``,   ``ℓ_r(i) = (1/|A_i|) Σ_{t∈A_i} (1/d) ‖h_θ^ℓ(x_i)_t − h_ref^ℓ(x_i)_t‖²``

over the answer tokens ``A_i`` (the labelled ones) of example ``i``, with ``u`` uniform on ``[0, 1)^d``
normalised to unit length (as the authors' and the reference's code draw it; seeded here by the run's
seed), ``c`` the steering coefficient and ``d`` the hidden size. This is
:func:`activation_mse`, the reference's ``compute_activation_loss`` (open-unlearning
``src/trainer/unlearn/rmu.py``).

**Defaults.** The steered layer is layer 7 of a 32-layer model (the WMDP paper's Zephyr-7B, and the
reference's ``module_regex: model\\.layers\\.7``), placed at the same relative depth on other models:
``round(7·L/32)`` (7 on SmolLM2's 30 layers, 1 on a 4-layer tiny model). The updated weights are the
WMDP paper's: the MLP down projections of layers ``ℓ−2 … ℓ`` (its code's ``layer_ids 5,6,7``,
``param_ids 6``; the reference's class default ``model\\.layers\\.(5|6|7)\\.mlp\\.down_proj\\.weight``).
Both can be named (``--rmu-layer``, ``--rmu-params``); a scorer then selects within those weights,
so GRIN's mask is laid over RMU's layers.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..errors import UserInputError
from ..models import text_config

WMDP_LAYER, WMDP_DEPTH = 7, 32  # the WMDP paper's steered layer, of Zephyr-7B's 32


@dataclass(frozen=True)
class HiddenStates:
    """Activations ``values`` (B, T, d) at the steered layer and the answer-token ``mask`` (B, T)."""

    values: torch.Tensor
    mask: torch.Tensor


def activation_mse(hidden: HiddenStates, target: torch.Tensor) -> torch.Tensor:
    """Per example ``(1/|A_i|) Σ_{t∈A_i} mean_d (h_t − target_t)²`` (B,); ``target`` broadcasts to
    ``hidden.values`` (a steering vector (d,) or another model's activations (B, T, d))."""
    squared = (hidden.values.float() - target.float()).square().mean(dim=-1)  # (B, T)
    mask = hidden.mask.float()
    return (squared * mask).sum(dim=-1) / mask.sum(dim=-1).clamp_min(1.0)


def num_layers(model) -> int:
    layers = getattr(text_config(model), "num_hidden_layers", None)
    if not isinstance(layers, int) or layers <= 0:
        raise UserInputError("objective rmu: the model's config has no num_hidden_layers (expected a decoder "
                             "with numbered layers)")
    return layers


def steered_layer(model, layer: int | None) -> int:
    """``layer`` checked against the model, or the default ``round(7·L/32)``."""
    count = num_layers(model)
    if layer is None:
        return min(count - 1, round(WMDP_LAYER * count / WMDP_DEPTH))
    if not 0 <= layer < count:
        raise UserInputError(f"--rmu-layer: expected a layer index in [0, {count - 1}], got {layer}")
    return layer


def layer_module(model, layer: int) -> torch.nn.Module:
    """The decoder layer whose output is steered: the module named ``….layers.<layer>``."""
    matches = [module for name, module in model.named_modules()
               if name == f"layers.{layer}" or name.endswith(f".layers.{layer}")]
    if len(matches) != 1:
        raise UserInputError(f"--rmu-layer {layer}: expected one module named '…layers.{layer}', found {len(matches)}")
    return matches[0]


def scope_patterns(model, layer: int | None, patterns: list[str] | None) -> list[str]:
    """The regexes (``re.fullmatch`` on parameter names) of the weights an RMU run updates."""
    if patterns:
        return list(patterns)
    steered = steered_layer(model, layer)
    layers = "|".join(str(i) for i in range(max(0, steered - 2), steered + 1))
    return [rf"(?:.*\.)?layers\.({layers})\.mlp\.down_proj\.weight"]


def scope_parameters(model, patterns: list[str]) -> dict[str, torch.nn.Parameter]:
    """The parameters whose names fully match one of ``patterns``; each pattern must match one."""
    try:
        compiled = [re.compile(p) for p in patterns]
    except re.error as err:
        raise UserInputError(f"--rmu-params: not a regular expression ({err})") from None
    named = dict(model.named_parameters())
    for pattern in compiled:
        if not any(pattern.fullmatch(name) for name in named):
            raise UserInputError(f"--rmu-params: {pattern.pattern!r} matches no parameter name of the model "
                                 f"(e.g. {next(iter(named))!r})")
    return {name: p for name, p in named.items() if any(pattern.fullmatch(name) for pattern in compiled)}


def control_vector(hidden_size: int, coefficient: float, seed: int) -> torch.Tensor:
    """``c·u``: ``u`` uniform on ``[0, 1)^d`` normalised to unit length, drawn from ``seed`` (d,)."""
    direction = torch.rand(hidden_size, generator=torch.Generator().manual_seed(seed))
    return direction / direction.norm() * coefficient


@contextlib.contextmanager
def capture_output(module: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collects ``module``'s output (the first element of a tuple) at each forward inside the block."""
    outputs: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        outputs.append(output[0] if isinstance(output, tuple) else output)

    handle = module.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


# The inputs that need a live frozen copy of the starting model (not a precomputed table).
LIVE_REFERENCE_INPUTS = ("retain_kl", "ref_retain_hidden")


def steering_setup(model, ref_model, hyperparams, needed: tuple[str, ...], seed: int) -> dict:
    """The :class:`~grin_unlearn.training.trainer.UnlearningTrainer` arguments of an objective that
    reads activations: the steered layer of the model (and of the reference) and the steering vector
    drawn from ``seed``; ``{}`` for the others."""
    if not {"forget_hidden", "retain_hidden"} & set(needed):
        return {}
    layer = steered_layer(model, hyperparams.rmu_layer)
    setup = {"hidden_layer": layer_module(model, layer)}
    if "ref_retain_hidden" in needed:
        setup["ref_hidden_layer"] = layer_module(ref_model, layer)
    if "control" in needed:
        setup["control"] = control_vector(int(text_config(model).hidden_size), hyperparams.steering_coeff, seed)
    return setup
