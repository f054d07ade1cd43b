"""Pure metric functions for unlearning evaluation (TOFU, MUSE, WMDP style).

Each function takes precomputed numbers, strings or tensors (never a model) and returns a
:class:`MetricResult`. The TOFU protocol that calls them is :mod:`grin_unlearn.evaluation.tofu`.
"""

from grin_unlearn.metrics.result import MetricResult
from grin_unlearn.metrics.extraction import exact_memorization, extraction_strength
from grin_unlearn.metrics.forget_quality import forget_ks, forget_ks_distance, forget_quality
from grin_unlearn.metrics.keywords import derive_keywords, keyword_accuracy, normalize_text
from grin_unlearn.metrics.membership import loss_score, mia_auc, min_k_percent_score, privleak, zlib_score
from grin_unlearn.metrics.multiple_choice import multiple_choice_accuracy
from grin_unlearn.metrics.probability import answer_probability, normalized_option_probability
from grin_unlearn.metrics.rouge import rouge_l_recall, rouge_scores
from grin_unlearn.metrics.safety import classifier_unsafe_rate, harmful_keyword_rate, refusal_rate
from grin_unlearn.metrics.truth_ratio import truth_ratio_forget_score, truth_ratio_per_item, truth_ratio_retain_score
from grin_unlearn.metrics.utility import model_utility

__all__ = [
    "MetricResult",
    "answer_probability",
    "classifier_unsafe_rate",
    "derive_keywords",
    "exact_memorization",
    "extraction_strength",
    "forget_ks",
    "forget_ks_distance",
    "forget_quality",
    "harmful_keyword_rate",
    "keyword_accuracy",
    "loss_score",
    "mia_auc",
    "min_k_percent_score",
    "model_utility",
    "multiple_choice_accuracy",
    "normalize_text",
    "normalized_option_probability",
    "privleak",
    "refusal_rate",
    "rouge_l_recall",
    "rouge_scores",
    "truth_ratio_forget_score",
    "truth_ratio_per_item",
    "truth_ratio_retain_score",
    "zlib_score",
]
