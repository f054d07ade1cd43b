"""The distributions behind forget quality: each model's forget-set truth ratios against the oracle's.

Forget quality is the p-value of a two-sample KS test between the unlearned model's forget-set truth
ratios ``R_i`` and the retain-only oracle's (:mod:`grin_unlearn.metrics.forget_quality`). One number
hides *how* the two differ: a model whose ``R_i`` still sit where the target's do has not moved the
likelihood of correct against perturbed answers, however well it has stopped generating the answer
(keyword accuracy and ROUGE measure generation; the truth ratio measures likelihoods). This module
shows the whole distributions: the empirical CDF of ``ln R_i`` per model, where the KS distance
``D = sup_x |F_model(x) − F_oracle(x)|`` is the largest vertical gap to the oracle's curve, and a table
of quartiles with ``D`` counted in forget questions (``D · n``).

``ln R`` reads: 0 = the model cannot tell the correct answer from the perturbed ones, negative = it
prefers the correct answer (the target, having learnt the forget facts, sits left of the oracle).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..evaluation.reference_logs import oracle_view
from ..metrics import forget_ks
from .report import new_figure, save_figure

__all__ = ["forget_truth_ratios", "log_ratio_cdf", "plot_truth_ratio_cdfs", "shift_rows", "shift_table"]


def forget_truth_ratios(eval_result: dict) -> list[float]:
    """The forget-set ``R_i`` of an ``eval.json`` dict (items without perturbed answers dropped)."""
    return oracle_view(eval_result).truth_ratios


def log_ratio_cdf(ratios: list[float]) -> tuple[list[float], list[float]]:
    """Empirical CDF of ``ln R`` as a step function: sorted ``x`` and ``F(x) = #{ln R_i <= x} / n``."""
    xs = sorted(math.log(max(r, 1e-300)) for r in ratios)
    return xs, [(i + 1) / len(xs) for i in range(len(xs))]


def _quartiles(ratios: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles([math.log(max(r, 1e-300)) for r in ratios], n=4, method="inclusive")
    return q1, median, q3


def shift_rows(models: dict[str, dict], oracle: dict) -> list[dict]:
    """Per model (label -> ``eval.json`` dict) and for the oracle itself: the quartiles of ``ln R`` on
    the forget set, the KS distance to the oracle in questions and the forget quality (one KS test)."""
    reference = forget_truth_ratios(oracle)
    rows = []
    for label, result in {"oracle": oracle, **models}.items():
        ratios = forget_truth_ratios(result)
        if not ratios or not reference:
            continue
        quality, distance = forget_ks(ratios, reference)
        q1, median, q3 = _quartiles(ratios)
        rows.append({"method": label, "n": len(ratios), "q1": q1, "median": median, "q3": q3,
                     "ks_questions": distance.value * len(ratios), "forget_quality": quality.value})
    return rows


def shift_table(rows: list[dict]) -> str:
    lines = ["| model | ln R: 1st quartile | median | 3rd quartile | KS distance to the oracle (questions) "
             "| forget quality |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['q1']:+.2f} | {row['median']:+.2f} | {row['q3']:+.2f} | "
                     f"{row['ks_questions']:.0f} / {row['n']} | {row['forget_quality']:.3g} |")
    return "\n".join(lines)


def plot_truth_ratio_cdfs(models: dict[str, dict], oracle: dict, path: str | Path,
                          title: str = "forget-set truth ratios against the oracle's") -> Path:
    """Step plot of the empirical CDF of ``ln R`` on the forget set: the oracle in black, each model
    (label -> ``eval.json`` dict) in colour, its legend entry giving the KS distance and forget quality."""
    rows = {row["method"]: row for row in shift_rows(models, oracle)}
    figure = new_figure(7.5, 4.8)
    axes = figure.add_subplot(1, 1, 1)
    for label, result in {"oracle": oracle, **models}.items():
        if label not in rows:
            continue
        xs, fs = log_ratio_cdf(forget_truth_ratios(result))
        row = rows[label]
        legend = label if label == "oracle" else (
            f"{label}: D = {row['ks_questions']:.0f}/{row['n']}, forget quality {row['forget_quality']:.2g}")
        axes.step(xs, fs, where="post", label=legend,
                  **({"color": "black", "linewidth": 2.2} if label == "oracle" else {"linewidth": 1.4}))
    axes.axvline(0.0, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("ln truth ratio on the forget set (0: cannot tell correct from perturbed)")
    axes.set_ylabel("share of forget questions ≤ x")
    axes.set_title(title)
    axes.legend(fontsize=7, loc="upper left")
    return save_figure(figure, path)
