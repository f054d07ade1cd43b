"""Everything done with ``eval.json`` (the dict :func:`grin_unlearn.evaluation.evaluate` returns) without
a model: reading and writing, and the tables. The cross-set aggregates are :mod:`.aggregates`.

``eval.json`` holds ``{"sets": {name: {"role", "n", "metrics", "per_item"}}, "aggregates": {...},
"config": {...}, "timing": {...}}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import UserInputError
from ..io_utils import atomic_write_json
from .aggregates import needs
from .reference_logs import OracleView, is_reference_logs, load_reference_logs, oracle_view

EVAL_FILE = "eval.json"
# Per-set columns of the summary: (metric key in eval.json, column header).
SUMMARY_COLUMNS = (("rouge_l_recall", "rouge_l"), ("keyword_accuracy", "kw_acc"), ("answer_probability", "prob"),
                   ("normalized_option_probability", "opt_prob"), ("truth_ratio", "truth_ratio"),
                   ("extraction_strength", "extract"), ("multiple_choice_accuracy", "mcq_acc"), ("cloze_accuracy", "cloze_acc"),
                   ("nll", "nll"))


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


def load_oracle(path: str | Path) -> OracleView:
    """The oracle of ``--oracle``: this project's ``eval.json`` (file or run folder) or the reference's
    ``TOFU_EVAL.json`` of a retain model (file or folder)."""
    path = Path(path).expanduser()
    if path.is_dir() and not (path / EVAL_FILE).is_file() and (path / "TOFU_EVAL.json").is_file():
        return oracle_view(load_reference_logs(path), str(path))
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UserInputError(f"--oracle {path}: not a readable JSON file ({err})") from None
        if is_reference_logs(data):
            view = oracle_view(data, str(path))
            if not view.truth_ratios:
                raise UserInputError(f"--oracle {path}: the reference log has no forget_truth_ratio values")
            return view
    return oracle_view(load_eval(path), str(path))


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
    """An aligned text table of the metrics that apply: one row per set (only the columns some set
    has), then the aggregates that were computed; the ones left out for want of an input are named."""
    sets = result.get("sets", {})
    columns = [(key, label) for key, label in SUMMARY_COLUMNS
               if any(key in s.get("metrics", {}) for s in sets.values())]
    header = ["set", "role", "n"] + [label for _, label in columns]
    rows = [[name, str(s.get("role", "")), str(s.get("n", ""))]
            + [format_number(s.get("metrics", {}).get(key)) if key in s.get("metrics", {}) else ""
               for key, _ in columns] for name, s in sets.items()]
    lines = _aligned(header, rows)
    aggregates = _numeric_aggregates(result)
    shown = {k: v for k, v in aggregates.items() if v is not None}
    if shown:
        lines += [""] + _aligned(["aggregate", "value"], [[k, format_number(v)] for k, v in shown.items()])
    wanted = needs()
    missing = [f"{k} (needs {wanted[k]})" for k, v in aggregates.items() if v is None and k in wanted
               and any(s.get("role") == "forget" for s in sets.values())]
    if missing:
        lines += ["", "not computed: " + ", ".join(missing)]
    return "\n".join(lines)


def compare_table(results: dict[str, dict]) -> str:
    """Markdown table of the aggregates side by side: one row per aggregate, one column per run label."""
    if not results:
        raise UserInputError("compare: no runs given")
    keys: list[str] = []
    for result in results.values():
        keys += [k for k, v in _numeric_aggregates(result).items() if k not in keys and v is not None]
    labels = list(results)
    lines = ["| metric | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for key in keys:
        cells = [format_number(results[label].get("aggregates", {}).get(key)) for label in labels]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
