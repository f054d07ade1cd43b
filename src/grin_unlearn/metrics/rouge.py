"""ROUGE-L recall between generated answers and reference answers.

TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121) reports
ROUGE-L *recall* of the greedy generation against the gold answer (Lin 2004, "ROUGE: A Package for
Automatic Evaluation of Summaries").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from rouge_score import rouge_scorer

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_list, check_same_length, mean

__all__ = ["rouge_l_recall", "rouge_scores"]


@lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def _strings(arg: str, values: Sequence[str]) -> list[str]:
    out = as_list(arg, values)
    for i, s in enumerate(out):
        if not isinstance(s, str):
            raise UserInputError(f"`{arg}`[{i}] must be a string, got {type(s).__name__}")
    return out


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> MetricResult:
    """ROUGE-L recall of each prediction against its reference; aggregate = mean over items.

    Formula (Lin 2004): with ``LCS`` the longest common subsequence of the token sequences of
    reference ``r`` and prediction ``p``, ``R_lcs = |LCS(r, p)| / |r|``. As in TOFU
    (arXiv 2401.06121), only the recall is kept.

    Tokenisation is ``rouge_score``'s default with the Porter stemmer (``use_stemmer=True``): text is
    lower-cased and every character outside ``[a-z0-9]`` becomes a separator, so non-Latin text
    scores 0. An empty prediction or reference scores 0.
    """
    preds = _strings("predictions", predictions)
    refs = _strings("references", references)
    check_same_length("predictions", preds, "references", refs)
    scorer = _scorer()
    # RougeScorer.score(target, prediction): the reference is the target.
    per_item = [float(scorer.score(r, p)["rougeL"].recall) for p, r in zip(preds, refs)]
    return MetricResult(name="rouge_l_recall", value=mean(per_item), per_item=per_item)


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> list[dict[str, float]]:
    """Per item ``{"rouge1_recall", "rougeL_f1", "rougeL_recall"}`` of each prediction against its
    reference: the three numbers the reference implementation stores per item (open-unlearning
    ``eval_text_similarity``, the same ``RougeScorer(["rouge1", "rougeL"], use_stemmer=True)``).
    """
    preds = _strings("predictions", predictions)
    refs = _strings("references", references)
    check_same_length("predictions", preds, "references", refs)
    scorer = _scorer()
    out = []
    for p, r in zip(preds, refs):
        score = scorer.score(r, p)
        out.append({"rouge1_recall": float(score["rouge1"].recall), "rougeL_f1": float(score["rougeL"].fmeasure),
                    "rougeL_recall": float(score["rougeL"].recall)})
    return out
