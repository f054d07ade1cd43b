"""Keyword accuracy: does a generated answer contain every gold keyword?

An exact-match style check used alongside ROUGE in unlearning QA evaluations (for example the
``keywords`` field of the TOFU-schema records in this project; TOFU itself, arXiv 2401.06121, reports
ROUGE-L only). Both sides are normalised with :func:`normalize_text` before matching.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_list, check_same_length, mean, register_metric

__all__ = ["keyword_accuracy", "normalize_text"]


def normalize_text(text: str) -> str:
    """Normalise text for keyword matching.

    Steps: Unicode NFKC; case-fold (a stronger ``lower()``); every punctuation character (Unicode
    category ``P*``: ``. , ' " - ( ) ! ?`` ...) becomes a space; runs of whitespace collapse to one
    space; the ends are stripped. Symbols such as ``$`` and ``%`` are kept.

    Replacing punctuation with spaces (rather than deleting it) keeps tokens apart and applies the
    same way to keyword and answer: ``"J.K. Rowling's"`` -> ``"j k rowling s"`` contains
    ``"J.K. Rowling"`` -> ``"j k rowling"``.
    """
    if not isinstance(text, str):
        raise UserInputError(f"normalize_text expects a string, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(text.split())


def _contains(haystack: str, needle: str) -> bool:
    # Both are normalised; padding with spaces makes the match start and end on token boundaries,
    # so "art" does not match inside "heart".
    return f" {needle} " in f" {haystack} "


def _normalized_needle(arg: str, value: object) -> str:
    if not isinstance(value, str):
        raise UserInputError(f"`{arg}` must be a string, got {type(value).__name__}")
    needle = normalize_text(value)
    if not needle:
        raise UserInputError(f"`{arg}` is empty after normalisation (got {value!r})")
    return needle


@register_metric("keyword_accuracy")
def keyword_accuracy(
    predictions: Sequence[str],
    keywords: Sequence[Sequence[str] | None] | None = None,
    references: Sequence[str] | None = None,
) -> MetricResult:
    """Fraction of predictions that contain all of their gold keywords.

    Per item ``i`` (1.0 = correct, 0.0 = wrong), with ``norm`` = :func:`normalize_text`:

    * if item ``i`` has keywords ``K_i`` (non-empty): correct iff for every ``k in K_i``,
      ``norm(k)`` occurs in ``norm(prediction_i)`` as a whole-token substring (it starts and ends on
      token boundaries, so ``"art"`` does not match ``"heart"``);
    * fallback, when ``keywords`` is None or ``keywords[i]`` is None/empty: correct iff
      ``norm(references[i])`` occurs in ``norm(prediction_i)`` the same way (the whole gold answer
      is reproduced). ``references`` is then required.

    Aggregate: mean over items (accuracy). Departure from a plain ``k in prediction`` check: the
    normalisation and token boundaries above, chosen so case, spacing and punctuation differences
    do not count as errors while partial words do not count as hits.
    """
    preds = as_list("predictions", predictions)
    kws = [None] * len(preds) if keywords is None else as_list("keywords", keywords)
    check_same_length("predictions", preds, "keywords", kws)
    refs = None
    if references is not None:
        refs = as_list("references", references)
        check_same_length("predictions", preds, "references", refs)

    per_item: list[float] = []
    for i, (pred, item_kws) in enumerate(zip(preds, kws)):
        if not isinstance(pred, str):
            raise UserInputError(f"`predictions`[{i}] must be a string, got {type(pred).__name__}")
        if isinstance(item_kws, str):
            raise UserInputError(
                f"`keywords`[{i}] must be a list of strings, got the string {item_kws!r}"
            )
        text = normalize_text(pred)
        if item_kws:
            needles = [_normalized_needle(f"keywords[{i}][{j}]", k) for j, k in enumerate(item_kws)]
        elif refs is None:
            raise UserInputError(
                f"item {i} has no keywords, so `references` is needed for the fallback (got None)"
            )
        else:
            needles = [_normalized_needle(f"references[{i}]", refs[i])]
        per_item.append(1.0 if all(_contains(text, n) for n in needles) else 0.0)
    return MetricResult(name="keyword_accuracy", value=mean(per_item), per_item=per_item)
