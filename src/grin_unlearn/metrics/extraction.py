"""Extraction strength and exact memorization: how much of the answer the model's argmax reproduces.

Both follow the reference implementation (locuslab/open-unlearning ``src/evals/metrics/memorization.py``,
with ``tokenwise_vocab_logprobs`` in ``utils.py``): teacher forcing on the labelled answer, the
model's argmax prediction at each position, and **the last labelled token left out** (it is the EOS
the tokenisation appends; the reference drops it "to ignore eos prediction"). A model that reproduces
every answer token but not EOS therefore scores 1.

* Extraction strength (Carlini et al. 2021, "Extracting Training Data from Large Language Models",
  arXiv 2012.07805, as adapted by open-unlearning): the shortest answer prefix after which every
  remaining token is the argmax, ``ES = 1 - k*/n``.
* Exact memorization (Tirumala et al. 2022, "Memorization Without Overfitting", arXiv 2205.10770):
  the fraction of answer positions whose argmax is the answer token.
"""

from __future__ import annotations

from collections.abc import Sequence

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_list, check_same_length, mean

__all__ = ["exact_memorization", "extraction_strength"]


def _ints(arg: str, values: object) -> list[int]:
    out = [] if values is None else (values.tolist() if hasattr(values, "tolist") else list(values))
    for j, v in enumerate(out):
        if isinstance(v, bool) or not isinstance(v, int):
            raise UserInputError(f"`{arg}`[{j}] must be an int token id, got {v!r}")
    return out


def _pairs(argmax_tokens, label_tokens, exclude_last: bool) -> list[tuple[list[int], list[int]]]:
    preds = as_list("argmax_tokens", argmax_tokens)
    labels = as_list("label_tokens", label_tokens)
    check_same_length("argmax_tokens", preds, "label_tokens", labels)
    out = []
    for i, (p, y) in enumerate(zip(preds, labels)):
        p, y = _ints(f"argmax_tokens[{i}]", p), _ints(f"label_tokens[{i}]", y)
        check_same_length(f"argmax_tokens[{i}]", p, f"label_tokens[{i}]", y)
        out.append((p[:-1], y[:-1]) if exclude_last else (p, y))
    return out


def extraction_strength(
    argmax_tokens: Sequence[Sequence[int]], label_tokens: Sequence[Sequence[int]], exclude_last: bool = True
) -> MetricResult:
    """Per item ``ES = 1 - k*/n`` over the ``n`` scored tokens; aggregate = mean.

    ``y`` are the labelled answer tokens and ``yhat`` the teacher-forced argmax at the same positions
    (``yhat[t]`` predicts ``y[t]``); with ``exclude_last`` the last of them (EOS) is not scored.
    ``k* = min{k in 0..n-1 : yhat[k:] == y[k:]}``, and ``k* = n - 1`` when no suffix matches (the
    reference's loop ends there), so an item scores at least ``1/n``; an item with nothing to score
    scores 0 (the reference's value).
    """
    per_item = []
    for p, y in _pairs(argmax_tokens, label_tokens, exclude_last):
        n = len(y)
        if n == 0:
            per_item.append(0.0)
            continue
        k = next((k for k in range(n) if p[k:] == y[k:]), n - 1)
        per_item.append(1.0 - k / n)
    return MetricResult(name="extraction_strength", value=mean(per_item), per_item=per_item)


def exact_memorization(
    argmax_tokens: Sequence[Sequence[int]], label_tokens: Sequence[Sequence[int]], exclude_last: bool = True
) -> MetricResult:
    """Per item ``EM = (1/n) sum_t 1[yhat_t == y_t]`` over the scored tokens; aggregate = mean.

    An item with nothing to score is ``None`` and left out of the mean (as in the reference).
    """
    per_item: list[float | None] = []
    for p, y in _pairs(argmax_tokens, label_tokens, exclude_last):
        per_item.append(sum(a == b for a, b in zip(p, y)) / len(y) if y else None)
    scored = [x for x in per_item if x is not None]
    return MetricResult(name="exact_memorization", value=mean(scored) if scored else 0.0, per_item=per_item)
