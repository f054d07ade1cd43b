"""GradNorm membership attack: the gradient norm of an item's loss (for LLM training data, arXiv
2402.17012, the paper the reference implementation cites for it).

A text the model was trained on sits near a minimum of its loss, so the loss's gradient is small there.
Per item ``x`` with loss ``L(x) = −(1/T) Σ_t log π(x_t|x_<t)`` (the labelled tokens but the last, the
appended EOS) the score is the mean over the model's parameter tensors ``θ_j`` of ``‖∇_{θ_j} L(x)‖_p``
(``p`` ∈ {1, 2, ∞}; TOFU config ``p: 2``), as the reference implementation computes it (open-unlearning
``src/evals/metrics/mia/gradnorm.py``: one item per backward pass, parameters with no gradient
skipped). Higher score = less familiar = more likely a non-member, as every score of
:mod:`grin_unlearn.metrics.membership`. The gradients come from
:func:`grin_unlearn.evaluation.engine.gradient_norms`; this module holds the formula.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_floats, as_list, mean

__all__ = ["GRADNORM_ORDERS", "gradnorm_score"]

GRADNORM_ORDERS = (1.0, 2.0, math.inf)


def gradnorm_score(parameter_norms: Sequence[Sequence[float]]) -> MetricResult:
    """Per item the mean of its per-parameter-tensor gradient norms ``‖∇_{θ_j} L(x)‖_p``; aggregate =
    mean over items. An item without a norm (no token to score) gets 0."""
    per_item = []
    for i, norms in enumerate(as_list("parameter_norms", parameter_norms)):
        norms = as_floats(f"parameter_norms[{i}]", norms) if len(norms) else []
        if any(n < 0 for n in norms):
            raise UserInputError(f"`parameter_norms`[{i}]: norms are >= 0, got {min(norms)}")
        per_item.append(mean(norms) if norms else 0.0)
    return MetricResult(name="mia_gradnorm", value=mean(per_item), per_item=per_item)
