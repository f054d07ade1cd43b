"""The truth-ratio distributions behind forget quality: the table against hand computations, the plotted
CDF against the KS statistic that forget quality is built on."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from grin_unlearn.experiments.truth_ratio_shift import (log_ratio_cdf, plot_truth_ratio_cdfs, shift_rows,
                                                        shift_table)


def _eval(ratios):
    """An eval.json dict with one forget set holding these per-item truth ratios."""
    return {"sets": {"forget10": {"role": "forget", "per_item": {"truth_ratio": list(ratios)}}}}


def test_shift_rows_against_a_hand_computation():
    # ln R: model 0, 1, 2, 3 (and one item without perturbed answers); oracle 2, 3, 4, 5.
    model = _eval([math.exp(v) for v in (0, 1, 2, 3)] + [None])
    oracle = _eval([math.exp(v) for v in (2, 3, 4, 5)])
    rows = {row["method"]: row for row in shift_rows({"unlearned": model}, oracle)}
    row = rows["unlearned"]
    assert row["n"] == 4
    # Inclusive quartiles of 0, 1, 2, 3: 0.75, 1.5, 2.25.
    assert math.isclose(row["q1"], 0.75) and math.isclose(row["median"], 1.5) and math.isclose(row["q3"], 2.25)
    # F_model - F_oracle peaks at x in [1, 2): 2/4 - 0 -> two questions.
    assert math.isclose(row["ks_questions"], 2.0)
    assert math.isclose(row["forget_quality"], ks_2samp([0, 1, 2, 3], [2, 3, 4, 5]).pvalue)
    # The oracle against itself: distance 0, forget quality 1.
    assert rows["oracle"]["ks_questions"] == 0 and rows["oracle"]["forget_quality"] == 1.0
    table = shift_table(list(rows.values()))
    assert "| unlearned | +0.75 | +1.50 | +2.25 | 2 / 4 |" in table


def _cdf_at(xs, fs, x):
    """The step function of log_ratio_cdf evaluated at x (right-continuous)."""
    value = 0.0
    for xi, fi in zip(xs, fs):
        if xi <= x:
            value = fi
    return value


@pytest.mark.filterwarnings("ignore:ks_2samp:RuntimeWarning")  # the p-value's method, not D
@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-4, 4), min_size=1, max_size=15), st.lists(st.floats(-4, 4), min_size=1, max_size=15))
def test_largest_gap_between_plotted_cdfs_is_the_ks_distance(model_logs, oracle_logs):
    model, oracle = [math.exp(v) for v in model_logs], [math.exp(v) for v in oracle_logs]
    (mx, mf), (ox, of) = log_ratio_cdf(model), log_ratio_cdf(oracle)
    assert all(a <= b for a, b in zip(mx, mx[1:])) and mf[-1] == 1.0
    gap = max(abs(_cdf_at(mx, mf, x) - _cdf_at(ox, of, x)) for x in mx + ox)
    assert math.isclose(gap, ks_2samp(model, oracle).statistic, abs_tol=1e-12)


def test_plot_writes_a_png(tmp_path):
    path = plot_truth_ratio_cdfs({"a": _eval([0.5, 0.7, 1.2])}, _eval([0.9, 1.1, 1.3]), tmp_path / "tr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_report_section_plots_every_model_against_the_oracle(tmp_path):
    from grin_unlearn.experiments.demo import truth_ratio_lines

    oracle = _eval([0.9, 1.1, 1.3])
    assert truth_ratio_lines(tmp_path, {}, oracle) == []  # nothing to compare: no section, no plot
    assert not (tmp_path / "truth_ratios.png").exists()
    lines = truth_ratio_lines(tmp_path, {"target": _eval([0.2, 0.3, 0.4]), "NPO": _eval([0.9, 1.0, 1.3])}, oracle)
    table = "\n".join(lines)
    assert (tmp_path / "truth_ratios.png").is_file()
    # The target lies wholly left of the oracle (D = 3 of 3 questions); the unlearned model overlaps it.
    assert "| target | " in table and "| 3 / 3 |" in table
    assert "| NPO | " in table and "| 1 / 3 |" in table
