"""Typed metric result and the input checks every metric shares.

A metric is a pure function: it takes numbers, strings or tensors already computed by the evaluation
code (never a model) and returns a :class:`MetricResult` holding the aggregate and the per-item values
(the return shape of open-unlearning's ``evals/metrics``, without its ``**kwargs``). Which metric runs
on which set is written out in the protocol that uses it (:mod:`grin_unlearn.evaluation.tofu`), not
looked up by name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from grin_unlearn.errors import UserInputError

__all__ = ["MetricResult", "as_floats", "as_list", "check_same_length", "mean"]


@dataclass(frozen=True)
class MetricResult:
    """The outcome of one metric.

    Attributes:
        name: the name of the metric that produced it (its key in ``eval.json``).
        value: the aggregate (the number a table reports).
        per_item: one value per input item, in input order. Set-level metrics (forget quality, AUC,
            PrivLeak, model utility) have no per-example value: they leave it empty, except
            ``model_utility`` which lists the component values it averaged.
    """

    name: str
    value: float
    per_item: list[float | None]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready ``{"name", "value", "per_item"}`` dict (for ``eval.json``)."""
        return asdict(self)


# --- input checks shared by the metric modules -------------------------------------------------


def as_list(arg: str, values: Any) -> list:
    """``values`` as a plain list (tensors and arrays via ``tolist``); empty -> UserInputError."""
    if values is None:
        raise UserInputError(f"`{arg}` is required, got None")
    if isinstance(values, (str, bytes)):
        raise UserInputError(f"`{arg}` must be a sequence of items, got a single string")
    if hasattr(values, "tolist"):  # torch.Tensor / numpy.ndarray
        values = values.tolist()
    values = list(values)
    if not values:
        raise UserInputError(f"`{arg}` is empty; expected at least one item")
    return values


def as_floats(arg: str, values: Any, *, allow_inf: bool = False) -> list[float]:
    """A non-empty list of real numbers; NaN (and +-inf unless ``allow_inf``) -> UserInputError."""
    out = []
    for i, v in enumerate(as_list(arg, values)):
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise UserInputError(f"`{arg}`[{i}] must be a number, got {v!r}") from None
        if math.isnan(x) or (math.isinf(x) and not allow_inf):
            raise UserInputError(f"`{arg}`[{i}] must be a finite number, got {x}")
        out.append(x)
    return out


def check_same_length(arg_a: str, a: Sequence, arg_b: str, b: Sequence) -> None:
    """Raise UserInputError when two per-item inputs differ in length."""
    if len(a) != len(b):
        raise UserInputError(
            f"`{arg_a}` and `{arg_b}` must have one entry per item, got lengths {len(a)} and {len(b)}"
        )


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean of a non-empty sequence (callers have checked it is non-empty)."""
    return math.fsum(values) / len(values)
