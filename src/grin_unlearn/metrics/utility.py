"""Model utility (TOFU): the harmonic mean of the retain-side metrics.

TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121, Sec. 2.2.2)
takes the harmonic mean of nine values: probability, ROUGE-L and truth ratio on each of the retain set,
Real Authors and World Facts. The harmonic mean punishes a collapse in any one of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult

__all__ = ["model_utility"]


def model_utility(values: Mapping[str, float]) -> MetricResult:
    """Harmonic mean ``n / sum_k (1 / v_k)`` of the ``n`` values given, keyed by component name.

    Any subset of TOFU's nine components may be passed (e.g. when an eval split is absent); the
    result is the harmonic mean of what is present. If any value is 0 the result is 0 (the limit of
    the harmonic mean, the convention of ``scipy.stats.hmean``). Negative values are rejected.
    ``per_item`` lists the component values in the mapping's order.
    """
    if not isinstance(values, Mapping):
        raise UserInputError(
            f"`values` must be a mapping of metric name to value, got {type(values).__name__}"
        )
    if not values:
        raise UserInputError("`values` is empty; expected at least one utility component")
    per_item = []
    for key, v in values.items():
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise UserInputError(f"`values`[{key!r}] must be a number, got {v!r}") from None
        if not math.isfinite(x) or x < 0:
            raise UserInputError(f"`values`[{key!r}] must be a finite number >= 0, got {x}")
        per_item.append(x)
    value = 0.0 if 0.0 in per_item else len(per_item) / math.fsum(1.0 / x for x in per_item)
    return MetricResult(name="model_utility", value=value, per_item=per_item)
