"""Keyword accuracy: does a generated answer contain every gold keyword? And keywords for records
that have none.

An exact-match style check used alongside ROUGE in unlearning QA evaluations (the ``keywords`` field
of the TOFU-schema records of this project's generated world; TOFU itself, arXiv 2401.06121, reports
ROUGE-L only and its records carry no keywords). Both sides are normalised with
:func:`normalize_text` before matching. :func:`derive_keywords` gives a record without ``keywords``
the fact-bearing spans of its gold answer (rule in its docstring), so the metric measures whether the
facts are reproduced, not whether the whole answer is repeated verbatim.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_list, check_same_length, mean

__all__ = ["derive_keywords", "keyword_accuracy", "normalize_text"]


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


# Words that start a sentence or a clause without naming anything: stripped from the ends of
# capitalised spans ("The Guardian Award" -> "Guardian Award", "In Paris" -> "Paris").
_LEADING_WORDS = frozenset("""
a an the this that these those his her hers its their our my your he she it they we i you one some many
most such in on at as by for from of to into with without within after before during while when where
although though however moreover additionally also yes no not being born both each every other another
""".split())
# Lower-case words allowed inside a capitalised span, between two capitalised words.
_CONNECTORS = frozenset("of the de da del der di du la le von van al el bin y upon on in for and".split())
# Function words never used as fallback keywords.
_STOPWORDS = _LEADING_WORDS | frozenset("""
is are was were be been has have had do does did can could would should will shall may might must
and or but if then than so because which who whom whose what how why there here about over under
between through very more less much just only even well often known also has work works wrote written
author authors book books novel novels writer writers writing genre field life career well-known
""".split())
_QUOTED = re.compile(r'"([^"]+)"|\u201c([^\u201d]+)\u201d|(?<![\w])\'([^\']+)\'(?![\w])')
_NUMBER = re.compile(r"\b\d+(?:[.,:/]\d+)*(?:st|nd|rd|th|s)?\b")
_BREAK = re.compile(r"[,;:!?()\[\]]|(?<!\bDr)(?<!\bSt)(?<!\bMr)(?<!\bMs)(?<!\bJr)(?<!\bSr)(?<!\bMrs)\.(?=\s|$)")  # clause punctuation ends a capitalised span
_WORD = re.compile(r"[\w][\w'\u2019.-]*")


def _capitalised_spans(text: str) -> list[str]:
    """Maximal runs of capitalised words (lower-case connectors allowed between two of them), with
    leading/trailing function words and a trailing possessive removed."""
    words = []
    for segment in _BREAK.split(text):
        words += [m.group(0).rstrip(".").removesuffix("'s").removesuffix("\u2019s") for m in _WORD.finditer(segment)]
        words.append("")  # a span never crosses clause punctuation
    spans, run = [], []
    for word in words:
        capital = word[:1].isupper()
        if capital or (run and word.lower() in _CONNECTORS):
            run.append(word)
            continue
        while run and (run[-1].lower() in _CONNECTORS or run[-1].lower() in _LEADING_WORDS):
            run.pop()
        while run and run[0].lower() in _LEADING_WORDS:
            run.pop(0)
        if run:
            spans.append(" ".join(run))
        run = [word] if capital else []
    return spans


def derive_keywords(question: str, answer: str, fallback_words: int = 3) -> list[str]:
    """Keywords of a gold ``answer`` that has none: its fact-bearing spans absent from ``question``.

    Rule, in order (``norm`` = :func:`normalize_text`):

    1. Candidates, in order of appearance: quoted spans (``"..."``, curly quotes, ``'...'``; book
       titles); capitalised spans outside quotes (names, places, titles, awards: maximal runs of
       capitalised words, joined by lower-case connectors such as ``of``/``de``/``von``, with function
       words such as ``The``/``In``/``His`` stripped from their ends); numbers (years, counts).
    2. A candidate whose ``norm`` occurs in ``norm(question)`` as whole tokens is dropped (the author
       the question names is not the fact asked for), as is one contained in a kept longer candidate
       and a duplicate.
    3. No candidate left (an answer whose fact is lower-case, "a florist"): the ``fallback_words``
       longest content words (4+ letters, not function words, not in the question), in answer order.
    4. Still nothing (the answer repeats the question): ``[]``, and :func:`keyword_accuracy` falls
       back to the whole answer.

    Example: question "Where was Jaime Vasquez born?", answer "Jaime Vasquez was born in Santiago,
    Chile, in 1958." -> ``["Santiago", "Chile", "1958"]``.
    """
    question_norm = normalize_text(question)
    candidates: list[str] = []
    unquoted = answer
    for match in _QUOTED.finditer(answer):
        candidates.append(next(g for g in match.groups() if g is not None).strip())
        unquoted = unquoted.replace(match.group(0), " , ")
    candidates += _capitalised_spans(unquoted)
    candidates += [m.group(0) for m in _NUMBER.finditer(unquoted)]
    kept: list[str] = []
    for candidate in candidates:
        norm = normalize_text(candidate)
        if not norm or _contains(question_norm, norm) or any(_contains(normalize_text(k), norm) for k in kept):
            continue
        kept = [k for k in kept if not _contains(norm, normalize_text(k))] + [candidate]
    if kept:
        return kept
    question_words = set(question_norm.split())
    content = [w for w in dict.fromkeys(normalize_text(answer).split())
               if len(w) >= 4 and w.isalpha() and w not in _STOPWORDS and w not in question_words]
    longest = set(sorted(content, key=len, reverse=True)[:fallback_words])
    return [w for w in content if w in longest]


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
