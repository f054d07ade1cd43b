"""The unlearning objectives, one registered function per method (forget term only).

Each computes the per-example forget term ``ℓ_f`` from precomputed log-probs; the retain term, the
weights and the registry are :mod:`grin_unlearn.training.objective_registry`'s (``L = γ · mean ℓ_f +
α · mean ℓ_r``, :func:`~grin_unlearn.training.objective_registry.combine`), re-exported here so that
``from grin_unlearn.training.objectives import …`` reaches the whole interface. The defaults and their
sources are in each objective's docstring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .activations import activation_mse
from .objective_registry import (OBJECTIVES, RETAIN_LOSSES, ObjectiveDefaults, ObjectiveHyperparams,  # noqa: F401
                                 ObjectiveInputs, ObjectiveLoss, ObjectiveSpec, require_input, combine, get_objective,
                                 register_objective)


@register_objective("ga", needs_reference=False, needs_refusal=False, uses_retain=False,
                    defaults=ObjectiveDefaults(alpha=0.0))
def gradient_ascent(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Gradient ascent on the forget set.

    Jang et al., "Knowledge Unlearning for Mitigating Privacy Risks in Language Models",
    arXiv 2210.01504; the GA baseline of TOFU (Maini et al., arXiv 2401.06121):
    ``ℓ_f = −NLL(y|x) = (1/|y|) Σ_t log π_θ(y_t | x, y_<t)``; minimising it raises the NLL of
    forget answers. GA has no retain term (``alpha`` is ignored; its default is 0 to say so).

    Defaults: γ = 1, lr 1e-5, 10 epochs (open-unlearning ``docs/repro.md`` and
    ``configs/experiment/unlearn/tofu/default.yaml``).
    """
    return inputs.forget.mean


@register_objective("graddiff", needs_reference=False, needs_refusal=False)
def grad_diff(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Gradient difference (TOFU, Maini et al., arXiv 2401.06121).

    ``L = γ · (−NLL_forget) + α · ℓ_r``: gradient ascent on the forget set plus the retain term;
    the forget term is the same as :func:`gradient_ascent`.

    Defaults: γ = 1, α = 1, NLL retain loss, lr 1e-5, 10 epochs (open-unlearning ``docs/repro.md``;
    ``src/trainer/unlearn/grad_diff.py`` defaults ``retain_loss_type="NLL"``).
    """
    return inputs.forget.mean


@register_objective("npo", needs_reference=True, needs_refusal=False,
                    defaults=ObjectiveDefaults(beta=0.1, gamma=1.0, alpha=1.0))
def npo(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Negative Preference Optimization.

    Zhang et al., "Negative Preference Optimization: From Catastrophic Collapse to Effective
    Unlearning", arXiv 2404.05868:
    ``L_NPO = −(2/β) · log σ(−β · log(π_θ(y|x) / π_ref(y|x)))``
    with sequence log-probs (summed over answer tokens). As β → 0 its gradient tends to that of
    gradient ascent on the summed log-prob.

    Scale against the retain term: the forget term is on the *summed* answer log-prob (its gradient
    is ``2σ(β·d) · ∇ Σ_t log π_θ``, up to 2·|y| times a per-token gradient) while the retain NLL is a
    *mean* over answer tokens, so at α = 1 the forget gradient dominates by about the answer length
    while ``d`` is near 0. This is the reference definition (the NPO paper's eq. and open-unlearning
    ``src/trainer/utils.py`` ``compute_dpo_loss``: ``compute_batch_nll`` sums token losses; the retain
    term is the model's mean token loss), kept as is; raise ``alpha`` to rebalance.

    Defaults: β = 0.1, γ = 1, α = 1, NLL retain loss, lr 1e-5, 10 epochs (open-unlearning
    ``docs/repro.md``: "α = 1, γ = 1, β = 0.1", lr 1e-5, 10 epochs; β = 0.1 is also the NPO paper's).
    """
    ref = require_input(inputs.ref_forget, "ref_forget", "npo")
    log_ratio = inputs.forget.sum - ref.sum  # (B,)
    return -(2.0 / hp.beta) * F.logsigmoid(-hp.beta * log_ratio)


@register_objective("simnpo", needs_reference=False, needs_refusal=False,
                    defaults=ObjectiveDefaults(beta=4.5, delta=0.0, gamma=0.125, alpha=1.0))
def simnpo(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Simple NPO: reference-free, length-normalised NPO.

    Fan et al., "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
    Unlearning", arXiv 2410.07163, eq. (4):
    ``L_SimNPO = −(2/β) · log σ(−(β/|y|) · log π_θ(y|x) − γ_paper)``.
    Computed as the authors' code does (OPTML-Group/Unlearn-Simple ``TOFU/dataloader.py``, and
    open-unlearning ``src/trainer/unlearn/simnpo.py``):
    ``−(2/β) · log σ(β · (NLL(y|x)/|y| − δ))`` with ``δ = hp.delta``, i.e. the paper's margin is
    ``γ_paper = β·δ`` (``gamma`` here is the forget weight). Identical at the default δ = 0.

    Defaults: β = 4.5, δ = 0, γ (forget weight) = 0.125, α = 1, NLL retain loss, lr 1e-5, 10 epochs:
    the authors' TOFU forget10 setting (Unlearn-Simple ``TOFU/README.md``: ``npo_coeff=0.125
    beta=4.5``, forget05 ``npo_coeff=0.1375 beta=2.5``; ``TOFU/config/forget.yaml``: ``gamma: 0.0``,
    ``grad_diff_coeff: 1.0``, ``lr: 1e-5``, ``weight_decay: 0.01``; 10 epochs as in its
    ``run_scripts.py`` sweeps and open-unlearning's TOFU runs, where that ``forget.yaml`` says 20). At
    β = 0.1 (the old shared default) SimNPO is close to length-normalised gradient ascent.
    """
    return -(2.0 / hp.beta) * F.logsigmoid(hp.beta * (-inputs.forget.mean - hp.delta))


@register_objective("po", needs_reference=False, needs_refusal=True)
def preference_optimization(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Preference optimisation towards a refusal ("I don't know").

    TOFU (Maini et al., arXiv 2401.06121), "Preference Optimization", and the PO base objective of
    GRIN (arXiv 2508.06467): fine-tune on forget questions paired with a refusal answer ``y_idk``,
    ``ℓ_f = NLL(y_idk|x) = −(1/|y_idk|) Σ_t log π_θ(y_idk,t | x, y_idk,<t)``.

    Defaults: γ = 1, α = 1, NLL retain loss, lr 1e-5, 10 epochs (the open-unlearning TOFU setup,
    ``docs/repro.md``; TOFU's own ``config/forget.yaml`` used lr 1e-5 and 5 epochs).
    """
    refusal = require_input(inputs.refusal, "refusal", "po")
    return -refusal.mean


@register_objective("idkdpo", needs_reference=True, needs_refusal=True,
                    defaults=ObjectiveDefaults(beta=0.1, gamma=1.0, alpha=1.0))
def idk_dpo(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """DPO with the refusal as the preferred answer and the true answer as the rejected one.

    Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward
    Model", arXiv 2305.18290, eq. (7), scaled by 2/β as in the unlearning reference:
    ``L = −(2/β) · log σ(β · log(π_θ(y_w|x)/π_ref(y_w|x)) − β · log(π_θ(y_l|x)/π_ref(y_l|x)))``
    with ``y_w`` the refusal and ``y_l`` the true forget answer, sequence (summed) log-probs. The 2/β
    factor is open-unlearning's (``src/trainer/utils.py`` ``compute_dpo_loss``, shared with NPO, which is
    its ``y_w``-free case); without it, at β = 0.1 the forget term is 20× weaker against the retain term
    and the clipping norm than the reference's. Its gradient is ``2σ(−β·m) · ∇m`` for the margin
    ``m = chosen − rejected`` log-ratio: independent of β's scale near ``m = 0``.

    Defaults: β = 0.1, γ = 1, α = 1, NLL retain loss, lr 1e-5, 10 epochs (open-unlearning
    ``docs/repro.md``, its IdkDPO rows; the 2/β-scaled DPO loss with β = 0.1 is also SimNPO's
    ``dpo_grad_diff`` baseline in Unlearn-Simple ``TOFU/dataloader.py``).
    """
    refusal = require_input(inputs.refusal, "refusal", "idkdpo")
    ref_refusal = require_input(inputs.ref_refusal, "ref_refusal", "idkdpo")
    ref_forget = require_input(inputs.ref_forget, "ref_forget", "idkdpo")
    chosen = refusal.sum - ref_refusal.sum  # (B,)
    rejected = inputs.forget.sum - ref_forget.sum  # (B,)
    return -(2.0 / hp.beta) * F.logsigmoid(hp.beta * (chosen - rejected))


@register_objective("rmu", needs_reference=False, needs_refusal=False, steers=True,
                    defaults=ObjectiveDefaults(gamma=1.0, alpha=1.0, retain_loss="activation", steering_coeff=2.0))
def rmu(inputs: ObjectiveInputs, hp: ObjectiveHyperparams) -> torch.Tensor:
    """Representation Misdirection for Unlearning (WMDP; Li et al., "The WMDP Benchmark: Measuring and
    Reducing Malicious Use With Unlearning", arXiv 2403.03218, Sec. 5).

    ``ℓ_f = (1/|A|) Σ_{t∈A} (1/d) ‖h_θ^ℓ(x)_t − c·u‖²``: the forget answers' residual stream at the
    steered layer ``ℓ`` is pushed to a fixed random direction ``u`` of scale ``c``; with the
    activation retain term the retain answers' stream is held to the frozen model's
    (:mod:`grin_unlearn.training.activations`, which also names the updated weights).

    Defaults: γ = 1, α = 1, c = 2, the activation retain term, lr 1e-5, 10 epochs (open-unlearning
    ``configs/trainer/RMU.yaml``: ``gamma: 1.0, steering_coeff: 2, retain_loss_type: EMBED_DIFF,
    alpha: 1``, with its shared lr and epochs); steered layer 7 of 32 and the MLP down projections of
    layers 5–7 (the WMDP paper's code, ``layer_id 7``, ``layer_ids 5,6,7``, ``param_ids 6``). The WMDP
    paper's Zephyr-7B run used c = 6.5 and α = 1200; the reference's TOFU config updates every weight.
    """
    hidden = require_input(inputs.forget_hidden, "forget_hidden", "rmu")
    return activation_mse(hidden, require_input(inputs.control, "control", "rmu"))
