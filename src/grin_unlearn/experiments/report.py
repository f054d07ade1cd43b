"""Tables and plots of experiment results (the demo and sweep reports share them).

A *row* is ``{"method": label, <column>: value, ...}`` with the columns of :data:`COLUMNS`, read from
an ``eval.json``'s aggregates. Plots use matplotlib's Agg canvas (no display) and are written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from ..io_utils import atomic_write_bytes

COLUMNS = (
    ("forget_rouge_l", "forget ROUGE-L ↓"),
    ("forget_keyword_accuracy", "forget keyword acc ↓"),
    ("forget_truth_ratio", "forget truth ratio"),
    ("forget_quality", "forget quality ↑"),
    ("model_utility", "model utility ↑"),
    ("retain_rouge_l", "retain ROUGE-L ↑"),
    ("retain_keyword_accuracy", "retain keyword acc ↑"),
)


def metrics_row(label: str, eval_result: dict, seconds: float | None = None) -> dict:
    aggregates = eval_result.get("aggregates", {})
    row = {"method": label, **{key: aggregates.get(key) for key, _ in COLUMNS}}
    row["seconds"] = seconds
    return row


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 10 ** -digits else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: list[dict], columns=COLUMNS, time_column: bool = True) -> str:
    header = ["method"] + [title for _, title in columns] + (["wall time (s)"] if time_column else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"]] + [_fmt(row.get(key)) for key, _ in columns]
        if time_column:
            cells.append(_fmt(row.get("seconds"), 1) if row.get("seconds") is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(width: float = 8.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def plot_metric_bars(rows: list[dict], path: str | Path, columns=COLUMNS) -> Path:
    """Grouped bars: one group per metric, one bar per method."""
    figure = _figure(10, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        values = [row.get(key) or 0.0 for key, _ in columns]
        axes.bar([c + i * width for c in range(len(columns))], values, width, label=row["method"])
    axes.set_xticks([c + 0.4 - width / 2 for c in range(len(columns))])
    axes.set_xticklabels([title for _, title in columns], rotation=20, ha="right", fontsize=8)
    axes.set_ylim(0, 1.05)
    axes.legend(fontsize=8)
    axes.set_title("forget (↓ except forget quality) and utility (↑) metrics")
    return save_figure(figure, path)


def plot_quality_utility(points: list[dict], path: str | Path, title: str = "forget quality vs model utility") -> Path:
    """Scatter of model utility (x) against log10 forget quality (y); each point ``{method, model_utility,
    forget_quality}`` with optional ``*_std`` error bars; the oracle and target are marked."""
    figure = _figure(7, 5)
    axes = figure.add_subplot(1, 1, 1)
    for point in points:
        quality = point.get("forget_quality")
        utility = point.get("model_utility")
        if quality is None or utility is None:
            continue
        y = math.log10(max(quality, 1e-30))
        marker = {"oracle": "*", "target": "X"}.get(point["method"], "o")
        axes.errorbar(utility, y, xerr=point.get("model_utility_std"), marker=marker, markersize=10 if marker != "o" else 6,
                      linestyle="none", capsize=3, label=point["method"])
    axes.axhline(math.log10(0.05), color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("model utility ↑")
    axes.set_ylabel("log10 forget quality ↑ (dotted: p = 0.05)")
    axes.set_title(title)
    axes.legend(fontsize=7, ncol=2)
    return save_figure(figure, path)
