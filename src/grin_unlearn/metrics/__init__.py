"""Pure metric functions for unlearning evaluation (TOFU, MUSE, WMDP style).

Each function takes precomputed numbers, strings or tensors (never a model) and returns a
:class:`MetricResult`; all are registered by name in :data:`METRICS` (see :func:`get_metric`).
"""

from grin_unlearn.metrics.result import METRICS, MetricResult, get_metric, register_metric
from grin_unlearn.metrics.extraction import extraction_strength
from grin_unlearn.metrics.forget_quality import forget_quality
from grin_unlearn.metrics.keywords import keyword_accuracy, normalize_text
from grin_unlearn.metrics.membership import (
    loss_score,
    mia_auc,
    min_k_percent_score,
    privleak,
    zlib_score,
)
from grin_unlearn.metrics.multiple_choice import multiple_choice_accuracy
from grin_unlearn.metrics.probability import answer_probability, normalized_option_probability
from grin_unlearn.metrics.rouge import rouge_l_recall
from grin_unlearn.metrics.safety import classifier_unsafe_rate, harmful_keyword_rate, refusal_rate
from grin_unlearn.metrics.truth_ratio import (
    truth_ratio_forget_score,
    truth_ratio_per_item,
    truth_ratio_retain_score,
)
from grin_unlearn.metrics.utility import model_utility

__all__ = [
    "METRICS",
    "MetricResult",
    "answer_probability",
    "classifier_unsafe_rate",
    "extraction_strength",
    "forget_quality",
    "harmful_keyword_rate",
    "get_metric",
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
    "register_metric",
    "rouge_l_recall",
    "truth_ratio_forget_score",
    "truth_ratio_per_item",
    "truth_ratio_retain_score",
    "zlib_score",
]
