"""Tests for grin_unlearn.metrics.result."""

from grin_unlearn.metrics import MetricResult


def test_metric_result_to_dict():
    r = MetricResult(name="x", value=0.5, per_item=[0.0, 1.0])
    assert r.to_dict() == {"name": "x", "value": 0.5, "per_item": [0.0, 1.0]}
