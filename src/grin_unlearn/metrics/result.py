"""Typed metric result, the metric registry, and the input checks every metric shares.

A metric is a pure function: it takes numbers, strings or tensors already computed by the evaluation
code (never a model) and returns a :class:`MetricResult` holding the aggregate and the per-item values
(the return shape of open-unlearning's ``evals/metrics``, without its ``**kwargs``).

Metrics register themselves with ``@register_metric(name)`` next to their definition; ``get_metric``
looks one up by name and, for an unknown name, raises :class:`UserInputError` listing the valid ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from grin_unlearn.errors import UserInputError

__all__ = [
    "METRICS",
    "MetricResult",
    "get_metric",
    "register_metric",
]


@dataclass(frozen=True)
class MetricResult:
    """The outcome of one metric.

    Attributes:
        name: the registry name of the metric that produced it.
        value: the aggregate (the number a table reports).
        per_item: one value per input item, in input order. Set-level metrics (forget quality, AUC,
            PrivLeak, model utility) have no per-example value: they leave it empty, except
            ``model_utility`` which lists the component values it averaged.
    """

    name: str
    value: float
    per_item: list[float]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready ``{"name", "value", "per_item"}`` dict (for ``eval.json``)."""
        return asdict(self)


METRICS: dict[str, Callable[..., MetricResult]] = {}


def register_metric(name: str) -> Callable[[Callable[..., MetricResult]], Callable[..., MetricResult]]:
    """Decorator that adds a metric function to :data:`METRICS` under ``name``.

    Registering a second, different function under a taken name is a programming error and raises
    ``ValueError``; re-registering the same function (a module reload) is allowed.
    """

    def decorator(fn: Callable[..., MetricResult]) -> Callable[..., MetricResult]:
        existing = METRICS.get(name)
        if existing is not None and (existing.__module__, existing.__qualname__) != (
            fn.__module__,
            fn.__qualname__,
        ):
            raise ValueError(
                f"metric name {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        METRICS[name] = fn
        return fn

    return decorator


def get_metric(name: str) -> Callable[..., MetricResult]:
    """Return the metric registered as ``name``; an unknown name raises :class:`UserInputError`."""
    try:
        return METRICS[name]
    except KeyError:
        valid = ", ".join(sorted(METRICS))
        raise UserInputError(f"unknown metric {name!r}; valid metrics are: {valid}") from None


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
