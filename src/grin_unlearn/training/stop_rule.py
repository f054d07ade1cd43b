"""The stopping rule of evaluation during training: conditions such as ``forget_keyword_accuracy<=0.1``.

A rule is a list of conditions ``METRIC<=x`` or ``METRIC>=x``; it holds at an evaluation when every
condition does (a metric the evaluation lacks fails its condition). The metrics are the cross-set
numbers an evaluation of the run's own forget and retain sets yields (:data:`MONITOR_METRICS`;
forget quality needs an oracle, so it is not among them). One rule both ways: stop once forgetting is
done (``forget_keyword_accuracy<=0.1 model_utility>=0.45``) or once a run has already failed
(``model_utility<=0.2``, what a tuner wants of a trial that will not be chosen).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import UserInputError

MONITOR_METRICS = ("model_utility",) + tuple(
    f"{role}_{metric}" for role in ("forget", "retain")
    for metric in ("probability", "truth_ratio", "rouge_l", "keyword_accuracy", "extraction_strength"))
_CONDITION = re.compile(r"^\s*([a-z_]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str  # "<=" or ">="
    value: float

    def holds(self, metrics: dict) -> bool:
        got = metrics.get(self.metric)
        if got is None or (isinstance(got, float) and math.isnan(got)):
            return False
        return got <= self.value if self.op == "<=" else got >= self.value

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_stop_rule(conditions: list[str]) -> list[Condition]:
    """The :class:`Condition` of each ``METRIC<=x`` / ``METRIC>=x`` string (one clear error otherwise)."""
    if isinstance(conditions, str):
        conditions = [conditions]
    rule = []
    for text in conditions:
        match = _CONDITION.match(str(text))
        if match is None:
            raise UserInputError(f"--stop-when {text!r}: expected METRIC<=NUMBER or METRIC>=NUMBER, e.g. "
                                 "forget_keyword_accuracy<=0.1")
        metric, op, number = match.groups()
        if metric not in MONITOR_METRICS:
            raise UserInputError(f"--stop-when {text!r}: unknown metric '{metric}' (valid: {', '.join(MONITOR_METRICS)})")
        try:
            value = float(number)
        except ValueError:
            raise UserInputError(f"--stop-when {text!r}: '{number}' is not a number") from None
        rule.append(Condition(metric, op, value))
    return rule


def rule_holds(rule: list[Condition], metrics: dict) -> bool:
    """Whether every condition of a non-empty ``rule`` holds for ``metrics``."""
    return bool(rule) and all(condition.holds(metrics) for condition in rule)
