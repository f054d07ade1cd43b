"""Interop with the reference implementation's TOFU logs (``TOFU_EVAL.json``).

locuslab/open-unlearning writes, per evaluated metric (and every metric it pre-computes), one entry
``name -> {"agg_value": ..., "value_by_index": {row: {...}}}`` (``src/evals/base.py``; the names are
those of ``configs/eval/tofu_metrics/*.yaml``). :func:`to_reference_logs` writes the same file for a
model evaluated here, so the two tools' outputs diff directly; :func:`oracle_view` reads the retain
model's numbers that forget quality and PrivLeak need from either file kind (an ``eval.json`` of
this project or a reference ``TOFU_EVAL.json``), so a retain log made elsewhere can be the oracle.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserInputError

REFERENCE_FILE = "TOFU_EVAL.json"
PREFIX = {"forget": "forget", "retain": "retain", "real_authors": "ra", "world_facts": "wf"}
TRUTH_RATIO_KEY = {"forget": "forget_truth_ratio", "retain": "retain_Truth_Ratio",
                   "real_authors": "ra_Truth_Ratio", "world_facts": "wf_Truth_Ratio"}
MIA_ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm")  # scored per set (set_metrics.py)


def _first_of_role(sets: dict[str, dict], role: str) -> dict | None:
    return next((s for s in sets.values() if s.get("role") == role), None)


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return math.fsum(values) / len(values) if values else None


def _prob_entry(losses: list) -> dict:
    """``{agg_value, value_by_index: {i: {prob, avg_loss}}}``; a list of losses per row stays a list."""
    rows, means = {}, []
    for i, loss in enumerate(losses):
        if loss is None or loss == []:
            continue
        if isinstance(loss, list):
            rows[i] = {"prob": [math.exp(-x) for x in loss], "avg_loss": list(loss)}
            means.append(_mean(rows[i]["prob"]))
        else:
            rows[i] = {"prob": math.exp(-loss), "avg_loss": loss}
            means.append(rows[i]["prob"])
    return {"agg_value": _mean(means), "value_by_index": rows}


def _score_entry(values: list, agg_value) -> dict:
    return {"agg_value": agg_value, "value_by_index": {i: {"score": v} for i, v in enumerate(values) if v is not None}}


def _set_logs(role: str, entry: dict) -> dict:
    prefix, items, metrics, logs = PREFIX[role], entry["per_item"], entry["metrics"], {}
    logs[f"{prefix}_Q_A_Prob"] = _prob_entry(items["answer_loss"])
    if "perturbed_loss" in items and any(items["perturbed_loss"]):
        logs[f"{prefix}_Q_A_PERT_Prob"] = _prob_entry(items["perturbed_loss"])
        if role in ("forget", "retain"):
            logs[f"{prefix}_Q_A_PARA_Prob"] = _prob_entry(items["correct_loss"])
        if "truth_ratio" in metrics:
            logs[TRUTH_RATIO_KEY[role]] = _score_entry(items["truth_ratio"], metrics["truth_ratio"])
        if "normalized_option_probability" in metrics:
            logs[f"{prefix}_Q_A_Prob_normalised"] = {
                "agg_value": metrics["normalized_option_probability"],
                "value_by_index": {i: {"prob": p} for i, p in enumerate(items["normalized_option_probability"])
                                   if p is not None}}
    if "generation" in items:
        logs[f"{prefix}_Q_A_ROUGE"] = {"agg_value": metrics["rouge_l_recall"], "value_by_index": {
            i: {"rouge1_recall": items["rouge1_recall"][i], "rougeL_f1": items["rouge_l_f1"][i],
                "rougeL_recall": items["rouge_l_recall"][i], "input": items["prompt"][i],
                "ground_truth": items["ground_truth"][i], "generation": items["generation"][i]}
            for i in range(entry["n"])}}
    return logs


def to_reference_logs(result: dict) -> dict:
    """The reference's ``TOFU_EVAL.json`` content for an ``eval.json`` dict (first set of each role).

    Row indices are positions in the evaluated sets (the reference's dataset indices when the sets
    are TOFU's files in order); the keys are sorted, as the reference writes them.
    """
    sets, aggregates, logs = result.get("sets", {}), result.get("aggregates", {}), {}
    for role in PREFIX:
        entry = _first_of_role(sets, role)
        if entry is not None:
            logs.update(_set_logs(role, entry))
    forget, holdout = _first_of_role(sets, "forget"), _first_of_role(sets, "holdout")
    if forget is not None:
        items = forget["per_item"]
        logs["extraction_strength"] = _score_entry(items["extraction_strength"], forget["metrics"]["extraction_strength"])
        logs["exact_memorization"] = _score_entry(items["exact_memorization"], forget["metrics"]["exact_memorization"])
        logs["forget_quality"] = {"agg_value": aggregates.get("forget_quality")}
    if aggregates.get("model_utility") is not None:
        logs["model_utility"] = {"agg_value": aggregates["model_utility"]}
    for attack in MIA_ATTACKS:
        auc = aggregates.get(f"mia_auc_{attack}")
        if auc is None:
            continue
        sides = {name: {"agg_value": entry["metrics"][f"mia_{attack}"],
                        "value_by_index": {str(i): {"score": v} for i, v in enumerate(entry["per_item"][f"mia_{attack}"])}}
                 for name, entry in (("forget", forget), ("holdout", holdout))}
        logs[f"mia_{attack}"] = {**sides, "auc": auc, "agg_value": auc}
    if aggregates.get("mia_auc_reference") is not None:
        logs["mia_reference"] = {"auc": aggregates["mia_auc_reference"], "agg_value": aggregates["mia_auc_reference"]}
    if aggregates.get("privleak") is not None:
        logs["privleak"] = {"agg_value": aggregates["privleak"]}
    return dict(sorted(logs.items()))


@dataclass
class OracleView:
    """What forget quality and PrivLeak need from the retain-only model's evaluation."""

    truth_ratios: list[float] = field(default_factory=list)  # raw forget-set R_i
    mia_auc: dict[str, float] = field(default_factory=dict)  # attack -> AUC
    source: str = ""
    losses: dict[str, list[float]] = field(default_factory=dict)  # forget/holdout -> per-item LOSS (reference attack)
    muse_auc: float | None = None  # MUSE's Min-K% AUC on its privleak texts (MUSE's PrivLeak)


def is_reference_logs(data: dict) -> bool:
    return isinstance(data, dict) and "sets" not in data and any(
        isinstance(v, dict) and "agg_value" in v for v in data.values())


def oracle_view(oracle: dict, source: str = "oracle") -> OracleView:
    """The oracle numbers from an ``eval.json`` dict or a reference ``TOFU_EVAL.json`` dict."""
    if is_reference_logs(oracle):
        ratios = [row["score"] for row in (oracle.get("forget_truth_ratio") or {}).get("value_by_index", {}).values()
                  if isinstance(row, dict) and row.get("score") is not None]
        aucs = {attack: oracle[f"mia_{attack}"]["agg_value"] for attack in MIA_ATTACKS
                if isinstance(oracle.get(f"mia_{attack}"), dict) and oracle[f"mia_{attack}"].get("agg_value") is not None}
        loss = oracle.get("mia_loss") if isinstance(oracle.get("mia_loss"), dict) else {}
        losses = {side: [row["score"] for row in loss[side]["value_by_index"].values()]
                  for side in ("forget", "holdout") if isinstance(loss.get(side), dict) and loss[side].get("value_by_index")}
        return OracleView([float(r) for r in ratios], aucs, source, losses)
    losses = {role: entry["per_item"]["mia_loss"] for role in ("forget", "holdout")
              if (entry := _first_of_role(oracle.get("sets", {}), role)) and "mia_loss" in entry.get("per_item", {})}
    forget = _first_of_role(oracle.get("sets", {}), "forget") or {}
    ratios = [r for r in forget.get("per_item", {}).get("truth_ratio") or [] if r is not None]
    aggregates = oracle.get("aggregates", {})
    aucs = {attack: aggregates[f"mia_auc_{attack}"] for attack in MIA_ATTACKS
            if aggregates.get(f"mia_auc_{attack}") is not None}
    return OracleView(ratios, aucs, source, losses, aggregates.get("muse_mia_auc"))


def load_reference_logs(path: str | Path) -> dict:
    """A ``TOFU_EVAL.json`` file (or a folder holding one), checked to be the reference's format."""
    file = Path(path).expanduser()
    file = file / REFERENCE_FILE if file.is_dir() else file
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserInputError(f"{file}: not a readable TOFU_EVAL.json ({err})") from None
    if not is_reference_logs(data):
        raise UserInputError(f"{file}: not a reference TOFU log (expected metric -> {{agg_value, value_by_index}})")
    return data
