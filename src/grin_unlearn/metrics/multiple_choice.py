"""Zero-shot multiple-choice accuracy from the logits of the option letters.

As in WMDP (Li et al. 2024, "The WMDP Benchmark", arXiv 2403.03218) and MMLU (Hendrycks et al. 2021,
arXiv 2009.03300) zero-shot evaluation: the prompt lists the options as A, B, C, D; the model's
next-token logits for the letter tokens are compared and the largest one is the model's answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_list, check_same_length, mean

__all__ = ["multiple_choice_accuracy"]


def multiple_choice_accuracy(
    letter_logits: torch.Tensor | Sequence[Sequence[float]], answers: Sequence[int]
) -> MetricResult:
    """Per item ``1[argmax_c logits[i, c] == answers[i]]``; aggregate = mean (accuracy).

    ``letter_logits`` is ``(N, C)``: for each of ``N`` questions, the logit (or log-prob; argmax is
    the same) of each of the ``C`` option letters. Ties go to the lowest index (``torch.argmax``).
    """
    try:
        logits = torch.as_tensor(letter_logits, dtype=torch.float64)  # (N, C)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"`letter_logits` must be an (N, C) array of numbers: {err}") from None
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise UserInputError(
            f"`letter_logits` must have shape (N, C) with N, C >= 1, got {tuple(logits.shape)}"
        )
    if torch.isnan(logits).any():
        raise UserInputError("`letter_logits` contains NaN")
    gold = as_list("answers", answers)
    check_same_length("letter_logits", logits, "answers", gold)
    n_choices = logits.shape[1]
    for i, a in enumerate(gold):
        if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < n_choices:
            raise UserInputError(
                f"`answers`[{i}] must be an option index in [0, {n_choices}), got {a!r}"
            )
    predicted = logits.argmax(dim=1).tolist()  # (N,)
    per_item = [1.0 if p == a else 0.0 for p, a in zip(predicted, gold)]
    return MetricResult(name="multiple_choice_accuracy", value=mean(per_item), per_item=per_item)
