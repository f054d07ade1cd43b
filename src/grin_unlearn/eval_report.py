"""Everything done with ``eval.json`` (the dict :func:`grin_unlearn.evaluate.evaluate` returns) without
a model: the cross-set aggregates, reading and writing, and the tables.

``eval.json`` holds ``{"sets": {name: {"role", "n", "metrics", "per_item", "seconds"}},
"aggregates": {...}, "config": {...}}``. Non-finite truth ratios are written as ``Infinity``
(Python's ``json`` reads them back).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from .errors import UserInputError
from .io_utils import atomic_write_json
from .metrics import forget_quality, mia_auc, model_utility, privleak

logger = logging.getLogger(__name__)

EVAL_FILE = "eval.json"
OPTION_ROLES = ("world_facts", "real_authors")  # TOFU normalises the probability over the options here
UTILITY_ROLES = ("retain", "real_authors", "world_facts")
MIA_ATTACKS = ("loss", "zlib", "min_k")
# Per-set columns of the summary: (metric key in eval.json, column header).
SUMMARY_COLUMNS = (("rouge_l_recall", "rouge_l"), ("keyword_accuracy", "kw_acc"), ("answer_probability", "prob"),
                   ("normalized_option_probability", "opt_prob"), ("truth_ratio", "truth_ratio"),
                   ("extraction_strength", "extract"), ("mia_loss", "mia_loss"),
                   ("multiple_choice_accuracy", "mcq_acc"), ("nll", "nll"))


def _first_of_role(sets: dict[str, dict], role: str) -> dict | None:
    return next((s for s in sets.values() if s.get("role") == role), None)


def _oracle_forget_ratios(oracle: dict) -> list[float]:
    forget = _first_of_role(oracle.get("sets", {}), "forget")
    ratios = (forget or {}).get("per_item", {}).get("truth_ratio") or []
    return [r for r in ratios if r is not None]


def aggregate(sets: dict[str, dict], oracle: dict | None = None) -> dict:
    """Cross-set numbers from per-set results (the first set of each role is used).

    * ``forget_quality``: TOFU (arXiv 2401.06121, Sec. 2.2.2), the p-value of the two-sample KS test
      between the forget-set truth ratios ``R_i`` of this model and of the oracle (a retain-only
      model's eval dict); None without an oracle.
    * ``model_utility``: TOFU's harmonic mean of probability (normalised over the options on Real
      Authors / World Facts), ROUGE-L and truth-ratio score on the retain, real_authors and
      world_facts sets present (``model_utility_components`` lists them); None when none is there.
    * ``mia_auc_{loss,zlib,min_k}``: ROC AUC of the attack, forget set = members, holdout =
      non-members (None without a holdout set); ``privleak_*``: MUSE's PrivLeak (arXiv 2407.06460)
      of that AUC against the oracle's, None without an oracle.
    * ``forget_*`` / ``retain_*``: the per-set TOFU numbers copied up for tables.
    """
    forget, holdout = _first_of_role(sets, "forget"), _first_of_role(sets, "holdout")
    result: dict = {"forget_quality": None}
    if forget is not None and oracle is not None:
        model_ratios = [r for r in forget["per_item"].get("truth_ratio") or [] if r is not None]
        oracle_ratios = _oracle_forget_ratios(oracle)
        if model_ratios and oracle_ratios:
            result["forget_quality"] = forget_quality(model_ratios, oracle_ratios).value
        else:
            logger.warning("forget quality skipped: the %s has no forget-set truth ratios",
                           "model" if not model_ratios else "oracle eval")

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
        for key, label in (("rouge_l_recall", "rouge_l"), ("keyword_accuracy", "keyword_accuracy"),
                           ("truth_ratio", "truth_ratio"), ("answer_probability", "probability"),
                           ("extraction_strength", "extraction_strength")):
            result[f"{role}_{label}"] = metrics.get(key)
    mcq = _first_of_role(sets, "mcq")
    if mcq is not None:
        result["mcq_accuracy"] = mcq["metrics"]["multiple_choice_accuracy"]

    oracle_aggregates = (oracle or {}).get("aggregates", {})
    for attack in MIA_ATTACKS:
        key, auc = f"mia_{attack}", None
        if forget is not None and holdout is not None and key in forget["per_item"] and key in holdout["per_item"]:
            auc = mia_auc(forget["per_item"][key], holdout["per_item"][key]).value
        result[f"mia_auc_{attack}"] = auc
        oracle_auc, leak = oracle_aggregates.get(f"mia_auc_{attack}"), None
        if auc is not None and oracle_auc is not None:
            try:
                leak = privleak(auc, oracle_auc).value
            except UserInputError:  # oracle AUC of exactly 1: PrivLeak is undefined
                leak = None
        result[f"privleak_{attack}"] = leak
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
