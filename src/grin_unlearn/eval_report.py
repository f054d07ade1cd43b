"""Reading, writing and printing ``eval.json`` (the dict :func:`grin_unlearn.evaluate.evaluate` returns).

``eval.json`` holds ``{"sets": {name: {"role", "n", "metrics", "per_item", "seconds"}},
"aggregates": {...}, "config": {...}}``. Non-finite truth ratios are written as ``Infinity``
(Python's ``json`` reads them back).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import UserInputError
from .io_utils import atomic_write_json

EVAL_FILE = "eval.json"
# Per-set columns of the summary: (metric key in eval.json, column header).
SUMMARY_COLUMNS = (("rouge_l_recall", "rouge_l"), ("keyword_accuracy", "kw_acc"), ("answer_probability", "prob"),
                   ("normalized_option_probability", "opt_prob"), ("truth_ratio", "truth_ratio"),
                   ("extraction_strength", "extract"), ("mia_loss", "mia_loss"),
                   ("multiple_choice_accuracy", "mcq_acc"), ("nll", "nll"))


def _eval_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    return path if path.suffix == ".json" else path / EVAL_FILE


def load_eval(path: str | Path) -> dict:
    """An eval dict from an ``eval.json`` file or a run folder holding one (UserInputError otherwise)."""
    file = _eval_path(path)
    if not file.is_file():
        raise UserInputError(f"{path}: no {EVAL_FILE} found (expected an eval.json file or a run folder containing one)")
    try:
        result = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserInputError(f"{file}: not a readable eval.json ({err})") from None
    if not isinstance(result, dict) or not isinstance(result.get("sets"), dict) \
            or not isinstance(result.get("aggregates"), dict):
        raise UserInputError(f"{file}: malformed eval.json (expected an object with 'sets' and 'aggregates')")
    return result


def save_eval(path: str | Path, result: dict) -> Path:
    """Write ``result`` atomically to ``path`` (a ``.json`` file, or a folder: ``<folder>/eval.json``)."""
    return atomic_write_json(_eval_path(path), result)


def format_number(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.2e}"


def _aligned(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[c]) for row in [header] + rows) for c in range(len(header))]
    return ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
            for row in [header] + rows]


def _numeric_aggregates(result: dict) -> dict:
    return {k: v for k, v in result.get("aggregates", {}).items() if v is None or isinstance(v, (int, float))}


def format_summary(result: dict) -> str:
    """A compact aligned text table: one row per set (its main metrics), then the aggregates."""
    sets = result.get("sets", {})
    columns = [(key, label) for key, label in SUMMARY_COLUMNS
               if any(key in s.get("metrics", {}) for s in sets.values())]
    header = ["set", "role", "n"] + [label for _, label in columns] + ["sec"]
    rows = [[name, str(s.get("role", "")), str(s.get("n", ""))]
            + [format_number(s.get("metrics", {}).get(key)) for key, _ in columns]
            + [format_number(s.get("seconds"))] for name, s in sets.items()]
    lines = _aligned(header, rows)
    aggregates = _numeric_aggregates(result)
    if aggregates:
        lines += [""] + _aligned(["aggregate", "value"], [[k, format_number(v)] for k, v in aggregates.items()])
    return "\n".join(lines)


def compare_table(results: dict[str, dict]) -> str:
    """Markdown table of the aggregates side by side: one row per aggregate, one column per run label."""
    if not results:
        raise UserInputError("compare: no runs given")
    keys: list[str] = []
    for result in results.values():
        keys += [k for k in _numeric_aggregates(result) if k not in keys]
    labels = list(results)
    lines = ["| metric | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for key in keys:
        cells = [format_number(results[label].get("aggregates", {}).get(key)) for label in labels]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
