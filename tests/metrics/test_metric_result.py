"""Tests for grin_unlearn.metrics.result: MetricResult and the registry."""

import pytest

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics import METRICS, MetricResult, get_metric, register_metric, rouge_l_recall
from grin_unlearn.metrics.truth_ratio import truth_ratio_per_item

EXPECTED_NAMES = {
    "answer_probability", "extraction_strength", "forget_quality", "keyword_accuracy", "mia_auc",
    "mia_loss", "mia_min_k", "mia_zlib", "model_utility", "multiple_choice_accuracy",
    "normalized_option_probability", "privleak", "rouge_l_recall", "truth_ratio",
    "truth_ratio_forget", "truth_ratio_retain",
}


def test_all_metrics_registered():
    assert EXPECTED_NAMES <= set(METRICS)


def test_get_metric_returns_the_function():
    assert get_metric("rouge_l_recall") is rouge_l_recall
    assert get_metric("truth_ratio") is truth_ratio_per_item


def test_unknown_metric_lists_valid_names():
    with pytest.raises(UserInputError) as err:
        get_metric("rouge_2")
    msg = str(err.value)
    assert "'rouge_2'" in msg
    for name in ("forget_quality", "rouge_l_recall", "truth_ratio_forget"):
        assert name in msg


def test_user_input_error_is_value_error():
    with pytest.raises(ValueError):
        get_metric("nope")


def test_duplicate_registration_of_other_function_fails():
    with pytest.raises(ValueError, match="already registered"):

        @register_metric("rouge_l_recall")
        def impostor(predictions, references):  # pragma: no cover - never called
            raise AssertionError

    assert METRICS["rouge_l_recall"] is rouge_l_recall


def test_metric_result_to_dict():
    r = MetricResult(name="x", value=0.5, per_item=[0.0, 1.0])
    assert r.to_dict() == {"name": "x", "value": 0.5, "per_item": [0.0, 1.0]}
