"""Tables and plots of experiment results (the demo and sweep reports share them).

A *row* is ``{"method": label, <column>: value, ...}`` with the columns of :func:`report_columns`, read
from an ``eval.json``'s aggregates. Plots use matplotlib's Agg canvas (no display) and are written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from ..io_utils import atomic_write_bytes


def report_columns() -> tuple[tuple[str, str], ...]:
    """``(aggregate key, title)`` of the table columns: what the evaluation protocol's metrics declare
    (:func:`grin_unlearn.evaluation.aggregates.table_columns`), read at each call so that a metric
    added to the protocol is a column at once."""
    from ..evaluation.aggregates import table_columns  # the evaluation package loads torch

    return table_columns()


def metrics_row(label: str, eval_result: dict, seconds: float | None = None) -> dict:
    aggregates = eval_result.get("aggregates", {})
    row = {"method": label, **{key: aggregates.get(key) for key, _ in report_columns()}}
    row["seconds"] = seconds
    return row


def format_metric(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.2e}" if 0 < abs(value) < 10 ** -digits else f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: list[dict], columns: tuple | None = None, time_column: bool = True) -> str:
    """A markdown table of ``rows``; by default every results column that holds a value in some row
    (a benchmark without a knowledge set shows no knowledge column)."""
    if columns is None:
        columns = tuple((key, title) for key, title in report_columns() if any(row.get(key) is not None for row in rows))
    header = ["method"] + [title for _, title in columns] + (["wall time (s)"] if time_column else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"]] + [format_metric(row.get(key)) for key, _ in columns]
        if time_column:
            cells.append(format_metric(row.get("seconds"), 1) if row.get("seconds") is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def new_figure(width: float = 8.0, height: float = 4.5):
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


def plot_metric_bars(rows: list[dict], path: str | Path, columns: tuple | None = None) -> Path:
    """Grouped bars: one group per metric, one bar per method."""
    columns = report_columns() if columns is None else columns
    figure = new_figure(10, 4.5)
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
    forget_quality}`` with optional ``*_std`` error bars (forget quality's as mean ± std mapped onto the
    log axis); the oracle and target are marked."""
    figure = new_figure(7, 5)
    axes = figure.add_subplot(1, 1, 1)
    for point in points:
        quality = point.get("forget_quality")
        utility = point.get("model_utility")
        if quality is None or utility is None:
            continue
        y = math.log10(max(quality, 1e-30))
        marker = {"oracle": "*", "target": "X"}.get(point["method"], "o")
        axes.errorbar(utility, y, xerr=point.get("model_utility_std"), yerr=log_error(quality, point.get("forget_quality_std")),
                      marker=marker, markersize=10 if marker != "o" else 6,
                      linestyle="none", capsize=3, label=point["method"])
    axes.axhline(math.log10(0.05), color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("model utility ↑")
    axes.set_ylabel("log10 forget quality ↑ (dotted: p = 0.05)")
    axes.set_title(title)
    axes.legend(fontsize=7, ncol=2)
    return save_figure(figure, path)


def log_error(mean: float, std: float | None):
    """Asymmetric error bar of ``mean ± std`` on a log10 axis (None without a std).

    When ``std >= mean`` the lower end would be at −∞; it is drawn one decade below the mean instead
    (the table has the exact spread).
    """
    if not std:
        return None
    y = math.log10(max(mean, 1e-30))
    low = mean - std if mean - std > 0 else mean / 10
    return [[y - math.log10(max(low, 1e-30))], [math.log10(mean + std) - y]]


# --- sweeps: grid values, mean ± std tables, metric-vs-parameter lines -----------------------------

KEY_TITLES = {"objective": "objective", "selection.scorer": "scorer", "selection.ratio": "p",
              "noise.noise_var": "σ²", "noise.noise_mode": "noise mode", "train.seed": "seed"}
_LABEL_PREFIX = {"objective": "", "selection.scorer": "", "noise.noise_mode": "", "selection.ratio": "p=",
                 "noise.noise_var": "σ²="}


def key_title(key: str) -> str:
    return KEY_TITLES.get(key, key.split(".")[-1])


def format_grid_value(value) -> str:
    """A grid value in a table cell; None (not applicable, e.g. p of a full fine-tune) is "–"."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_label(values: dict) -> str:
    """``{"objective": "po", "selection.scorer": "grin", "selection.ratio": 0.4}`` -> ``po grin p=0.4``."""
    parts = [_LABEL_PREFIX.get(key, key.split(".")[-1] + "=") + format_grid_value(value)
             for key, value in values.items() if value is not None]
    return " ".join(parts) or "base"


def _mean_std(row: dict, key: str, digits: int = 3) -> str:
    mean, std = row.get(key), row.get(f"{key}_std")
    if mean is None:
        return "–"
    return f"{format_metric(float(mean), digits)} ± {format_metric(float(std or 0.0), digits)}"


def mean_std_table(groups: list[dict], keys: list[str], references: list[dict] = (),
                   columns: tuple | None = None) -> str:
    """Markdown table: one row per reference (``{method, <metric>...}``, single values) then one per
    configuration group (``{values, n, <metric>, <metric>_std, seconds, seconds_std}``, as
    :func:`grin_unlearn.experiments.aggregate.aggregate_cells` returns) with ``mean ± std`` cells."""
    columns = report_columns() if columns is None else columns
    key_columns = [key_title(k) for k in keys] or ["configuration"]
    header = key_columns + [title for _, title in columns] + ["wall time (s)", "n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in references:
        cells = [f"**{row['method']}**"] + [""] * (len(key_columns) - 1)
        cells += [format_metric(row.get(key)) for key, _ in columns] + ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    for group in groups:
        cells = [format_grid_value(group["values"].get(k)) for k in keys] or [group.get("method", "base")]
        cells += [_mean_std(group, key) for key, _ in columns]
        cells += [_mean_std(group, "seconds", 1), str(group.get("n", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_metric_vs(groups: list[dict], x_key: str, path: str | Path, metric: str = "forget_rouge_l",
                   log_x: bool = False, references: list[tuple[str, float]] = ()) -> Path:
    """One line per combination of the other grid values: ``metric`` (mean ± std) against ``x_key``.

    Groups whose ``x_key`` is None (a full fine-tune, which has no p or σ²) are dashed horizontal
    lines, as are groups with a non-numeric value (``auto``: chosen per run), ``references`` (label,
    value) dotted ones. With ``log_x`` the value 0 sits one decade left
    of the smallest positive value, labelled "0" and set apart by a grey break line.
    """
    figure = new_figure(7.5, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    lines: dict[str, list] = {}
    for group in groups:
        mean = group.get(metric)
        if mean is None:
            continue
        x = group["values"].get(x_key)
        label = config_label({k: v for k, v in group["values"].items() if k != x_key})
        if x is None:
            axes.axhline(mean, linestyle="--", linewidth=1, color="tab:gray", label=f"{label} (no mask)")
            continue
        if isinstance(x, str):  # e.g. --ratio auto: no fixed position on the axis
            axes.axhline(mean, linestyle="-.", linewidth=1, color="tab:purple", label=f"{label} ({x_key} = {x})")
            continue
        lines.setdefault(label, []).append((x, mean, group.get(f"{metric}_std") or 0.0))
    xs = sorted({x for points in lines.values() for x, _, _ in points})
    positive = [x for x in xs if x > 0]
    zero_at = (positive[0] / 10 if positive else 1.0) if log_x else 0.0
    for label, points in lines.items():
        points.sort()
        axes.errorbar([x if x > 0 or not log_x else zero_at for x, _, _ in points], [m for _, m, _ in points],
                      yerr=[s for _, _, s in points], marker="o", capsize=3, label=label)
    for (label, value), style in zip(references, ("-.", ":", ":")):
        if value is not None:
            axes.axhline(value, linestyle=style, linewidth=1, color="black", label=label)
    title = dict(report_columns()).get(metric, metric)
    if log_x and xs:
        axes.set_xscale("log")
        ticks = [zero_at if x <= 0 else x for x in xs]
        axes.set_xticks(ticks)
        axes.set_xticklabels(["0" if x <= 0 else f"{x:g}" for x in xs])
        axes.minorticks_off()
        if positive and len(positive) < len(xs):
            axes.axvline(math.sqrt(zero_at * positive[0]), color="lightgrey", linewidth=6, zorder=0)
    elif xs:
        axes.set_xticks(xs)
    axes.set_xlabel(key_title(x_key) + (" (log scale)" if log_x else ""))
    axes.set_ylabel(title)
    axes.set_title(f"{title} vs {key_title(x_key)} (mean ± std over seeds)")
    axes.legend(fontsize=7)
    return save_figure(figure, path)
