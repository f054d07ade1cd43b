"""ROUGE-1 / ROUGE-L between generated answers and reference answers, equal to ``rouge_score``'s.

TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121) reports
ROUGE-L *recall* of the greedy generation against the gold answer (Lin 2004, "ROUGE: A Package for
Automatic Evaluation of Summaries"); the reference implementation scores with
``rouge_score.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)``.

Same numbers, less time: the text is tokenised by ``rouge_score``'s own tokeniser (lower-case, every
character outside ``[a-z0-9]`` a separator, Porter stemming of words longer than 3 characters) with the
stems memoised, and the LCS length comes from a bit-parallel algorithm (Hyyrö 2004, "Bit-parallel LCS-
length computation revisited"; one big-integer step per prediction token) instead of the
``|r| × |p|`` Python table. Both are integers, so every ratio is the same float ``rouge_score`` computes
(``tests/metrics/test_rouge.py`` checks it against ``RougeScorer`` on generated text).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from rouge_score import scoring
from rouge_score import tokenize as rouge_tokenize

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_list, check_same_length, mean

__all__ = ["lcs_length", "rouge_l_recall", "rouge_scores", "rouge_tokens"]


class _MemoStemmer:
    """The Porter stemmer ``rouge_score`` uses (nltk's), with each word's stem computed once."""

    def __init__(self):
        from nltk.stem import porter

        self._stem = lru_cache(maxsize=None)(porter.PorterStemmer().stem)

    def stem(self, word: str) -> str:
        return self._stem(word)


@lru_cache(maxsize=1)
def _stemmer() -> _MemoStemmer:
    return _MemoStemmer()


def rouge_tokens(text: str) -> list[str]:
    """``rouge_score``'s tokens of ``text`` with ``use_stemmer=True``."""
    return rouge_tokenize.tokenize(text, _stemmer())


def lcs_length(reference: Sequence[str], prediction: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences.

    Bit-parallel (Hyyrö 2004): bit ``i`` of ``V`` stands for reference position ``i``; with ``M_t`` the
    positions where the reference holds token ``t``, each prediction token updates
    ``U = V & M_t; V = (V + U) | (V - U)``, and the LCS length is the number of zero bits of ``V``.
    """
    if not reference or not prediction:
        return 0
    positions: dict[str, int] = {}
    for i, token in enumerate(reference):
        positions[token] = positions.get(token, 0) | (1 << i)
    full = (1 << len(reference)) - 1
    v = full
    for token in prediction:
        matches = positions.get(token)
        if matches:
            u = v & matches
            v = ((v + u) | (v - u)) & full
    return len(reference) - bin(v).count("1")


def _strings(arg: str, values: Sequence[str]) -> list[str]:
    out = as_list(arg, values)
    for i, s in enumerate(out):
        if not isinstance(s, str):
            raise UserInputError(f"`{arg}`[{i}] must be a string, got {type(s).__name__}")
    return out


def _score(reference: list[str], prediction: list[str]) -> dict[str, float]:
    """``rouge1_recall``, ``rougeL_f1`` and ``rougeL_recall`` as ``rouge_score`` computes them."""
    overlap = sum((Counter(reference) & Counter(prediction)).values())  # Σ_w min(count_r(w), count_p(w))
    rouge1_recall = overlap / max(len(reference), 1)
    if not reference or not prediction:
        return {"rouge1_recall": rouge1_recall, "rougeL_f1": 0.0, "rougeL_recall": 0.0}
    lcs = lcs_length(reference, prediction)
    precision, recall = lcs / len(prediction), lcs / len(reference)
    return {"rouge1_recall": rouge1_recall, "rougeL_f1": float(scoring.fmeasure(precision, recall)),
            "rougeL_recall": recall}


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> MetricResult:
    """ROUGE-L recall of each prediction against its reference; aggregate = mean over items.

    Formula (Lin 2004): with ``LCS`` the longest common subsequence of the token sequences of
    reference ``r`` and prediction ``p``, ``R_lcs = |LCS(r, p)| / |r|``. As in TOFU
    (arXiv 2401.06121), only the recall is kept.

    Tokenisation is ``rouge_score``'s default with the Porter stemmer (``use_stemmer=True``): text is
    lower-cased and every character outside ``[a-z0-9]`` becomes a separator, so non-Latin text
    scores 0. An empty prediction or reference scores 0.
    """
    per_item = [s["rougeL_recall"] for s in rouge_scores(predictions, references)]
    return MetricResult(name="rouge_l_recall", value=mean(per_item), per_item=per_item)


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> list[dict[str, float]]:
    """Per item ``{"rouge1_recall", "rougeL_f1", "rougeL_recall"}`` of each prediction against its
    reference: the three numbers the reference implementation stores per item (open-unlearning
    ``eval_text_similarity``, ``RougeScorer(["rouge1", "rougeL"], use_stemmer=True)``).
    """
    preds = _strings("predictions", predictions)
    refs = _strings("references", references)
    check_same_length("predictions", preds, "references", refs)
    return [_score(rouge_tokens(r), rouge_tokens(p)) for p, r in zip(preds, refs)]
