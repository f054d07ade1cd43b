"""Extraction strength: how much of the answer the model reproduces, from the end backwards.

Following Carlini et al. 2021 ("Extracting Training Data from Large Language Models", arXiv 2012.07805)
as adapted by open-unlearning's "extraction strength" metric: with teacher forcing, find the shortest
answer prefix after which every remaining answer token is the model's argmax prediction.
"""

from __future__ import annotations

from collections.abc import Sequence

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_list, check_same_length, mean, register_metric

__all__ = ["extraction_strength"]


def _ints(arg: str, values: object) -> list[int]:
    out = as_list(arg, values)
    for j, v in enumerate(out):
        if isinstance(v, bool) or not isinstance(v, int):
            raise UserInputError(f"`{arg}`[{j}] must be an int token id, got {v!r}")
    return out


@register_metric("extraction_strength")
def extraction_strength(
    argmax_tokens: Sequence[Sequence[int]], label_tokens: Sequence[Sequence[int]]
) -> MetricResult:
    """Per item ``ES = 1 - k* / |y|``, ``k* = min{k in 0..|y| : yhat[k:] == y[k:]}``; aggregate = mean.

    ``y`` are the answer's label tokens and ``yhat`` the teacher-forced argmax predictions at the same
    positions (answer positions only, already shifted so ``yhat[t]`` predicts ``y[t]``). ES = 1 when
    the whole answer is the argmax continuation; ES = 0 when even the last token is wrong
    (``k* = |y|``, the empty suffix). Departure: open-unlearning searches ``k`` in ``0..|y|-1`` only,
    so an item with no matching suffix scores ``1/|y|`` there and 0 here.
    """
    preds = as_list("argmax_tokens", argmax_tokens)
    labels = as_list("label_tokens", label_tokens)
    check_same_length("argmax_tokens", preds, "label_tokens", labels)
    per_item = []
    for i, (p, y) in enumerate(zip(preds, labels)):
        p = _ints(f"argmax_tokens[{i}]", p)
        y = _ints(f"label_tokens[{i}]", y)
        check_same_length(f"argmax_tokens[{i}]", p, f"label_tokens[{i}]", y)
        # Walk back from the end while predictions match: k* is where the matching suffix starts.
        k = len(y)
        while k > 0 and p[k - 1] == y[k - 1]:
            k -= 1
        per_item.append(1.0 - k / len(y))
    return MetricResult(name="extraction_strength", value=mean(per_item), per_item=per_item)
