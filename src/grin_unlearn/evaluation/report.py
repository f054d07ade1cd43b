"""Everything done with ``eval.json`` (the dict :func:`grin_unlearn.evaluation.evaluate` returns) without
a model: the cross-set aggregates, reading and writing, and the tables.

``eval.json`` holds ``{"sets": {name: {"role", "n", "metrics", "per_item"}}, "aggregates": {...},
"config": {...}, "timing": {...}}``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from ..errors import UserInputError
from ..io_utils import atomic_write_json
from ..metrics import forget_ks, mia_auc, model_utility, privleak
from .set_metrics import aggregated_keys
from .reference_logs import MIA_ATTACKS, OracleView, is_reference_logs, load_reference_logs, oracle_view

logger = logging.getLogger(__name__)

EVAL_FILE = "eval.json"
UTILITY_ROLES = ("retain", "real_authors", "world_facts")
DEFAULT_ORACLE_AUC = 0.5  # the reference's PrivLeak reference AUC without retain logs (privleak.yaml ref_value)
# Per-set columns of the summary: (metric key in eval.json, column header).
SUMMARY_COLUMNS = (("rouge_l_recall", "rouge_l"), ("keyword_accuracy", "kw_acc"), ("answer_probability", "prob"),
                   ("normalized_option_probability", "opt_prob"), ("truth_ratio", "truth_ratio"),
                   ("extraction_strength", "extract"), ("multiple_choice_accuracy", "mcq_acc"), ("cloze_accuracy", "cloze_acc"),
                   ("nll", "nll"))
# Aggregates that stay None without a given input, and what to pass to get them.
NEEDS = {"forget_quality": "--oracle", "mia_auc_loss": "a holdout set", "mia_auc_zlib": "a holdout set",
         "mia_auc_min_k": "a holdout set", "privleak": "a holdout set"}


def _first_of_role(sets: dict[str, dict], role: str) -> dict | None:
    return next((s for s in sets.values() if s.get("role") == role), None)


def aggregate(sets: dict[str, dict], oracle: dict | OracleView | None = None) -> dict:
    """Cross-set numbers from per-set results (the first set of each role is used).

    * ``forget_quality``: TOFU (arXiv 2401.06121, Sec. 2.2.2), the p-value of the two-sample KS test
      between the forget-set truth ratios ``R_i`` of this model and of the oracle (a retain-only
      model's ``eval.json`` or reference ``TOFU_EVAL.json``); None without an oracle.
    * ``forget_ks_distance``: that test's statistic ``D`` (lower = closer to the oracle), which compares
      linearly where the p-value moves in coarse steps.
    * ``model_utility``: the harmonic mean of probability (normalised over the options on Real
      Authors / World Facts), ROUGE-L and truth-ratio score on the retain, real_authors and
      world_facts sets present (``model_utility_components`` lists them); None when none is there.
    * ``mia_auc_{loss,zlib,min_k}``: ROC AUC of the attack, forget set = members, holdout =
      non-members (None without a holdout set); ``privleak``: the reference's PrivLeak of the Min-K%
      AUC against the oracle's (``privleak_reference_auc``; 0.5, the reference's default, without one).
    * ``forget_*`` / ``retain_*``: the per-set numbers that the protocol's metrics declare
      (:func:`~grin_unlearn.evaluation.set_metrics.aggregated_keys`), copied up for tables.
    """
    view = oracle if isinstance(oracle, OracleView) or oracle is None else oracle_view(oracle)
    forget, holdout = _first_of_role(sets, "forget"), _first_of_role(sets, "holdout")
    result: dict = {"forget_quality": None, "forget_ks_distance": None}
    if forget is not None and view is not None:
        model_ratios = [r for r in forget["per_item"].get("truth_ratio") or [] if r is not None]
        if model_ratios and view.truth_ratios:
            quality, distance = forget_ks(model_ratios, view.truth_ratios)
            result["forget_quality"], result["forget_ks_distance"] = quality.value, distance.value
        else:
            logger.warning("forget quality skipped: the %s has no forget-set truth ratios",
                           "model" if not model_ratios else "oracle")

    components = {}
    for role in UTILITY_ROLES:
        metrics = (_first_of_role(sets, role) or {}).get("metrics", {})
        prob_key = "answer_probability" if role == "retain" else "normalized_option_probability"
        for key, label in ((prob_key, "probability"), ("rouge_l_recall", "rouge_l"), ("truth_ratio", "truth_ratio")):
            if metrics.get(key) is not None:
                components[f"{role}_{label}"] = metrics[key]
    result["model_utility"] = model_utility(components).value if components else None

    for role in ("forget", "retain"):
        metrics = (_first_of_role(sets, role) or {}).get("metrics", {})
        for key, label in aggregated_keys():  # what each metric of the protocol declares
            result[f"{role}_{label}"] = metrics.get(key)
    mcq = _first_of_role(sets, "mcq")
    if mcq is not None:
        result["mcq_accuracy"] = mcq["metrics"]["multiple_choice_accuracy"]

    for attack in MIA_ATTACKS:
        key, auc = f"mia_{attack}", None
        if forget is not None and holdout is not None and key in forget["per_item"] and key in holdout["per_item"]:
            auc = mia_auc(forget["per_item"][key], holdout["per_item"][key]).value
        result[f"mia_auc_{attack}"] = auc
    result["privleak"] = result["privleak_reference_auc"] = None
    if result["mia_auc_min_k"] is not None:
        reference_auc = view.mia_auc.get("min_k") if view is not None else None
        result["privleak_reference_auc"] = DEFAULT_ORACLE_AUC if reference_auc is None else reference_auc
        result["privleak"] = privleak(result["mia_auc_min_k"], result["privleak_reference_auc"]).value
    result["model_utility_components"] = components
    return result


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
    missing = [f"{k} (needs {NEEDS[k]})" for k, v in aggregates.items() if v is None and k in NEEDS
               and _first_of_role(sets, "forget") is not None]
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
