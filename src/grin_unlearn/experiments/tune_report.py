"""The report of a tuner folder: ``report.md`` and one ``pareto_<objective>.png`` per objective.

Reads ``<out>/tune.json`` (written by :func:`grin_unlearn.experiments.tune.run_tune`). Per objective:

* left panel — every finished validation trial of each scorer (forget quality, log scale, against model
  utility), its Pareto front (the trials no other trial of the same scorer beats on both), and the
  chosen trial (star);
* right panel — each chosen config rerun on the reported forget split: mean ± std over the seeds, with
  the target and the oracle;
* a table of the chosen configs: their validation values, their reported mean ± std, and the wall
  time spent on trials and on reruns;
* "Does the noise enlarge the forget gradient?": for every masked trial, the L2 norm of the forget
  gradient over the selected weights after the noise divided by before (``noise.json``), against σ²,
  with Spearman's rank correlation of that ratio with the trial's forget keyword accuracy.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import UserInputError
from ..evaluation import aggregate, load_eval
from ..io_utils import atomic_write_text
from ..run_dir import noise_record
from .aggregate import mean_std
from .report import new_figure, format_metric, log_error, metrics_row, save_figure
from .tune import STATE_FILE, STORAGE_FILE

SHOWN = (("forget_quality", "forget quality ↑"), ("model_utility", "model utility ↑"),
         ("forget_keyword_accuracy", "forget keyword acc ↓"), ("retain_keyword_accuracy", "retain keyword acc ↑"),
         ("knowledge_accuracy", "knowledge acc ↑"))  # knowledge: the real-model benchmark's only (else "–")


def pareto_front(rows: list[dict], x: str = "model_utility", y: str = "forget_quality") -> list[dict]:
    """Rows not dominated on (``x``, ``y``), both maximised: no other row is ≥ on both and > on one.
    Sorted by ``x``. (Optuna's ``study.best_trials`` would drop the trials that break the rule's
    constraints; the front shown here is the unconstrained one.)"""
    points = [r for r in rows if r.get(x) is not None and r.get(y) is not None]
    front = [r for r in points
             if not any(o[x] >= r[x] and o[y] >= r[y] and (o[x] > r[x] or o[y] > r[y]) for o in points)]
    return sorted(front, key=lambda r: (r[x], r[y]))


def _log10(value: float) -> float:
    return math.log10(max(value, 1e-30))


def _params_text(params: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in params.items())


def _summary(finals: list[dict]) -> dict:
    row = {}
    for key, _ in SHOWN + (("seconds", ""),):
        row[key], row[f"{key}_std"] = mean_std([f.get(key) for f in finals])
    return row


def _cell(row: dict, key: str) -> str:
    mean, std = row.get(key), row.get(f"{key}_std")
    return "–" if mean is None else f"{format_metric(mean)} ± {format_metric(std or 0.0)}"


def _times(cells: list[dict]) -> str:
    """Summed wall and CPU seconds the cells took when they ran (CPU: the process's, all threads)."""
    return f"{sum(c.get('seconds') or 0 for c in cells):.0f} / {sum(c.get('cpu_seconds') or 0 for c in cells):.0f}"


def reference_rows(out_dir: Path, state: dict) -> list[dict]:
    rows = []
    reported = state.get("reported") or {}
    for label in ("target", "oracle"):
        rel = reported.get(f"{label}_eval")
        if rel and (out_dir / rel).is_file():
            result = load_eval(out_dir / rel)
            if label == "oracle":  # forget quality against itself: 1.0
                result["aggregates"] = aggregate(result["sets"], result)
            rows.append(metrics_row(label, result))
    return rows


def plot_objective(objective: str, methods: dict[str, dict], references: list[dict], rule: dict, path: Path) -> Path:
    figure = new_figure(12, 5)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    colors = {}
    for name, entry in methods.items():
        scorer = name.split("_", 1)[1]
        trials = entry.get("trials") or []
        dots = left.scatter([t["model_utility"] for t in trials], [_log10(t["forget_quality"]) for t in trials],
                            alpha=0.35, s=18)
        colors[name] = dots.get_facecolor()[0][:3]
        front = pareto_front(trials)
        left.plot([t["model_utility"] for t in front], [_log10(t["forget_quality"]) for t in front],
                  color=colors[name], marker="o", markersize=4, label=f"{scorer} ({len(trials)} trials)")
        chosen = entry.get("chosen")
        picked = [t for t in trials if chosen and t["number"] == chosen["number"]]
        if picked:
            left.scatter([picked[0]["model_utility"]], [_log10(picked[0]["forget_quality"])], marker="*", s=220,
                         color=colors[name], edgecolors="black", zorder=3)
        summary = _summary(entry.get("finals") or [])
        if summary["forget_quality"] is not None:
            right.errorbar(summary["model_utility"], _log10(summary["forget_quality"]),
                           xerr=summary["model_utility_std"],
                           yerr=log_error(summary["forget_quality"], summary["forget_quality_std"]),
                           marker="*", markersize=12, capsize=3, linestyle="none", color=colors[name],
                           label=f"{scorer} (n={len(entry['finals'])})")
    for ref in references:
        if ref.get("forget_quality") is not None and ref.get("model_utility") is not None:
            right.scatter([ref["model_utility"]], [_log10(ref["forget_quality"])], s=90,
                          marker={"oracle": "P", "target": "X"}[ref["method"]], color="black", label=ref["method"])
    threshold = ((rule.get("subject_to") or {}).get("forget_quality") or {}).get("min")
    for axes, title in ((left, f"{objective}: validation trials, Pareto fronts, chosen (★)"),
                        (right, f"{objective}: chosen configs on the reported split (mean ± std)")):
        if threshold:
            axes.axhline(_log10(threshold), color="grey", linestyle=":", linewidth=1)
        axes.set_xlabel("model utility ↑")
        axes.set_ylabel("log10 forget quality ↑" + (f" (dotted: {threshold})" if threshold else ""))
        axes.set_title(title, fontsize=9)
        axes.legend(fontsize=7)
    return save_figure(figure, path)


def write_tune_report(out_dir: str | Path) -> Path:
    """Write ``report.md`` and the plots of a tuner folder; return the report's path."""
    out_dir = Path(out_dir)
    path = out_dir / STATE_FILE
    if not path.is_file():
        raise UserInputError(f"{out_dir}: no {STATE_FILE} (expected a folder written by `grin-unlearn tune`)")
    state = json.loads(path.read_text(encoding="utf-8"))
    resolved, rule = state["resolved"], state["resolved"]["rule"]
    references = reference_rows(out_dir, state)
    validation = state.get("validation") or {}
    lines = [f"# Tuner report: {Path(state['spec_path']).stem}", "",
             f"`grin-unlearn tune {state['spec_path']} --out {out_dir}` (status: {state.get('status')}). "
             f"{resolved['trials']} trials per method on the validation split, then each chosen config rerun on "
             f"the reported split `{state['reported']['forget']}` with seeds {resolved['seeds']}.", "",
             "Validation split: " + (f"authors {', '.join(validation['authors'])} (the {len(validation['authors'])} "
                                     f"authors just before the reported ones), {validation['forget_records']} forget "
                                     f"and {validation['retain_records']} retain records; oracle `{validation['oracle']}` "
                                     "(the base fine-tuned on every other author)." if "authors" in validation
                                     else f"`{json.dumps(validation)}`."), "",
             f"Selection rule: `{json.dumps(rule)}` — among trials meeting every bound, the highest "
             f"`{rule['maximize']}`; if none meets them, the highest `{rule['fallback']}`.", "",
             f"Search space: `{json.dumps(resolved['space'])}` (selection/noise keys for masked scorers only). "
             f"Inspect the trials with Optuna: `optuna-dashboard sqlite:///{out_dir / STORAGE_FILE}`.", ""]
    by_objective: dict[str, dict] = {}
    for name, entry in state["methods"].items():
        by_objective.setdefault(name.split("_", 1)[0], {})[name] = entry
    header = ["method", "chosen params", "validation FQ", "validation MU"] + [t for _, t in SHOWN] + \
             ["trials wall / CPU (s)", "reruns wall / CPU (s)"]
    for objective, methods in by_objective.items():
        png = plot_objective(objective, methods, references, rule, out_dir / f"pareto_{objective}.png")
        lines += [f"## {objective}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for ref in references:
            lines.append("| " + " | ".join([f"**{ref['method']}**", "", "", ""] + [format_metric(ref.get(k)) for k, _ in SHOWN]
                                           + ["", ""]) + " |")
        for name, entry in methods.items():
            chosen = entry.get("chosen") or {}
            trial = next((t for t in entry.get("trials", []) if t["number"] == chosen.get("number")), {})
            finals = entry.get("finals") or []
            summary = _summary(finals)
            cells = [name, _params_text(chosen.get("params", {})) or "–", format_metric(trial.get("forget_quality")),
                     format_metric(trial.get("model_utility"))] + [_cell(summary, k) for k, _ in SHOWN]
            cells += [_times(entry.get("trials", [])), _times(finals)]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Choices: " + "; ".join(f"{n}: trial {e['chosen']['number']} ({e['chosen']['reason']})"
                                              for n, e in methods.items() if e.get("chosen")), "",
                  f"![{objective}: Pareto fronts and chosen points]({png.name})", ""]
    lines += noise_section(out_dir, state)
    lines += ["## Wall time", "", "| invocation | setup (s) | trials (s) | reruns (s) | total (s) |", "|---|---|---|---|---|"]
    for i, inv in enumerate(state.get("invocations", []), start=1):
        lines.append(f"| {i} | {inv.get('setup_seconds', '–')} | {inv.get('tuning_seconds', '–')} | "
                     f"{inv.get('final_seconds', '–')} | {inv.get('total_seconds', '–')} |")
    lines += ["", "Trial and rerun times are the unlearning run plus its evaluation, as measured when each cell ran "
              "(a resumed invocation reuses finished cells; the invocation table counts only its own time). Setup: the embedded models, the validation oracle and the reference "
              "evaluations (cached after the first run).", ""]
    return atomic_write_text(out_dir / "report.md", "\n".join(lines))


def noise_section(out_dir: Path, state: dict) -> list[str]:
    """Report lines relating each masked trial's noise to its forget gradient and its forgetting."""
    from scipy.stats import spearmanr

    rows = []
    for name, entry in state["methods"].items():
        for trial in entry.get("trials", []):
            record = noise_record(out_dir / trial["dir"]) if trial.get("dir") else None
            gradient = (record or {}).get("forget_gradient") or {}
            if gradient.get("l2_ratio") is not None and trial.get("forget_keyword_accuracy") is not None:
                rows.append((name, trial, record["noise"], gradient))
    if not rows:
        return []
    rows.sort(key=lambda r: (r[2]["mode"], r[2]["variance"]))
    lines = ["## Does the noise enlarge the forget gradient?", "",
             "Every masked trial: the forget-set gradient over the selected weights before and after the noise "
             "(`noise.json`; L2 norms) and the trial's validation forgetting.", "",
             "| method | trial | mode | σ² | p | ‖g_f‖ before | ‖g_f‖ after | after / before | forget keyword acc |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, trial, noise, gradient in rows:
        lines.append(f"| {name} | {trial['number']} | {noise['mode']} | {noise['variance']:.2g} | "
                     f"{trial['params'].get('selection.ratio', float('nan')):.2f} | {gradient['before_noise']['l2']:.3g} | "
                     f"{gradient['after_noise']['l2']:.3g} | {gradient['l2_ratio']:.3g} | "
                     f"{trial['forget_keyword_accuracy']:.3f} |")
    ratios = [g["l2_ratio"] for *_, g in rows]
    forgetting = [t["forget_keyword_accuracy"] for _, t, *_ in rows]
    enlarged = sum(r > 1.05 for r in ratios)
    lines += ["", f"The noise enlarged the forget gradient by more than 5 % in {enlarged} of {len(rows)} masked trials "
              f"(median ratio {sorted(ratios)[len(ratios) // 2]:.3g})."]
    if len(rows) > 2 and len(set(ratios)) > 1 and len(set(forgetting)) > 1:
        rho, p_value = spearmanr(ratios, forgetting)
        lines[-1] += (f" Spearman's ρ between the enlargement and the forget keyword accuracy: {rho:.2f} "
                      f"(p = {p_value:.2g}, n = {len(rows)}; negative means larger enlargement, more forgetting; "
                      "confounded by lr, epochs and p, which the trials vary too).")
    return lines + [""]
