"""Automatic p (and σ²) against a grid of p, around a tuned config: ``auto_<method>.md`` / ``.json``.

Takes the config the tuner chose for a masked method (:mod:`grin_unlearn.experiments.tune`) and reruns
it on the reported split, over the tuner's seeds, with only the selection changed:

* ``auto p (coverage)`` — ``selection.ratio = auto`` with its default rule, the coverage of the forget
  gain (:mod:`grin_unlearn.selection.auto_ratio`);
* ``auto p (balance)`` — the same with the forget-gain / retain-damage balance (skipped with ``balance=False``);
* ``auto p (coverage) + auto σ²`` — also ``noise.noise_var = auto`` (:mod:`grin_unlearn.noise.auto_noise`);
* ``p = x`` for every ``x`` of the grid (the paper's greedy search over p, the other settings fixed).

The tuned config itself (its reruns) is the reference row. Compute is the wall time of the runs (each is
scoring + training + evaluation): a grid spends one run per value and seed and then picks, auto p spends
one run per seed. Which grid value is "best" is decided by the tuner's own rule over the grid's seed means.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import AUTO
from ..errors import UserInputError
from ..io_utils import atomic_write_json, atomic_write_text
from .aggregate import mean_std
from .report import format_metric
from .tune import STATE_FILE, Method, run_method_cell, select_trial
from .tune_phases import reported_phase
from .tune_report import SHOWN
from .tune_spec import params_key, parse_tune_spec

AUTO_LABEL = "auto p (coverage)"  # the default rule of --ratio auto; the row the compute summary reads


def _variants(chosen: dict, grid: list[float], auto_noise: bool, balance: bool = True) -> dict[str, dict]:
    coverage = {**chosen, "selection.ratio": AUTO, "selection.auto_rule": "coverage"}
    variants = {AUTO_LABEL: coverage}
    if balance:
        variants["auto p (balance)"] = {**chosen, "selection.ratio": AUTO, "selection.auto_rule": "balance"}
    if auto_noise:
        variants["auto p (coverage) + auto σ²"] = {**coverage, "noise.noise_var": AUTO}
    for ratio in grid:
        variants[f"p = {ratio:g}"] = {**chosen, "selection.ratio": float(ratio)}
    return variants


def _used(out_dir: Path, cell: dict) -> dict:
    """The p and σ² a finished cell actually used (resolved values in its config.json)."""
    config = json.loads((out_dir / cell["dir"] / "config.json").read_text())["config"]
    return {"ratio_used": config["selection"]["ratio"], "noise_var_used": config["noise"]["noise_var"]}


def _summarise(label: str, cells: list[dict]) -> dict:
    row = {"variant": label, "n": len(cells), "seconds_total": sum(c.get("seconds") or 0 for c in cells),
           "cpu_seconds_total": None if any(c.get("cpu_seconds") is None for c in cells)
           else sum(c["cpu_seconds"] for c in cells)}
    for key in [k for k, _ in SHOWN] + ["ratio_used", "noise_var_used", "seconds", "cpu_seconds"]:
        row[key], row[f"{key}_std"] = mean_std([c.get(key) for c in cells])
    return row


def run_auto_comparison(out_dir: str | Path, method_name: str, grid: list[float], cache_dir=None,
                        log=print, auto_noise: bool = True, balance: bool = True) -> Path:
    """Run the variants of the module docstring for ``method_name`` of the tuner folder ``out_dir``;
    write ``auto_<method>.json`` and ``auto_<method>.md``; return the markdown's path."""
    out_dir = Path(out_dir)
    if not (out_dir / STATE_FILE).is_file():
        raise UserInputError(f"{out_dir}: no {STATE_FILE} (run `grin-unlearn tune` into it first)")
    state = json.loads((out_dir / STATE_FILE).read_text())
    entry = state["methods"].get(method_name)
    objective, scorer = method_name.partition("_")[::2]
    if not entry or not entry.get("trials"):
        raise UserInputError(f"--compare-auto: '{method_name}' has no trials in {out_dir} "
                             f"(methods: {', '.join(state['methods'])})")
    if scorer == "none":
        raise UserInputError("--compare-auto: a full fine-tune (scorer none) has no p to set")
    spec = parse_tune_spec(state["spec"], state["spec_path"])  # as run, CLI overrides included
    method = Method(objective, scorer)
    phase = reported_phase(spec, out_dir, cache_dir, log)
    # The tuner's choice; while its reruns are still running, the same rule applied to its trials.
    chosen = (entry.get("chosen") or {}).get("params") or select_trial(entry["trials"], spec.rule)[0]["params"]
    finals = [{**f, **_used(out_dir, f)} for f in entry.get("finals") or []]
    rows = [_summarise(f"tuned (p = {chosen.get('selection.ratio', float('nan')):.3g})", finals)] if finals else []
    for label, params in _variants(chosen, grid, auto_noise, balance).items():
        folder = out_dir / "auto_compare" / method_name / params_key(params)
        cells = []
        for seed in spec.seeds:
            log(f"{method_name} {label}: seed {seed}")
            cell = run_method_cell(spec, phase, method, params, seed, folder / f"seed{seed}", out_dir)
            cells.append({**cell, **_used(out_dir, cell)})
        rows.append({**_summarise(label, cells), "cells": cells})
    grid_rows = [r for r in rows if r["variant"].startswith("p = ")]
    # The rule as the tuner resolved it (bounds relative to the target turned into numbers), as its trials were chosen.
    rule = (state.get("resolved") or {}).get("rule") or spec.rule
    best, reason = select_trial([{**r, "number": i} for i, r in enumerate(grid_rows)], rule) if grid_rows \
        else (None, "no grid")
    tuning = entry.get("trials") or []
    result = {"tuning_trials": len(tuning), "tuning_cpu_seconds": sum(t.get("cpu_seconds") or 0 for t in tuning),
              "tuning_seconds": sum(t.get("seconds") or 0 for t in tuning), "method": method_name, "chosen_params": chosen, "seeds": spec.seeds, "rule": rule,
              "best_grid": best and best["variant"], "best_grid_reason": reason, "rows": rows}
    atomic_write_json(out_dir / f"auto_{method_name}.json", result)
    return _write_markdown(out_dir, result, grid_rows)


def _write_markdown(out_dir: Path, result: dict, grid_rows: list[dict]) -> Path:
    header = ["variant", "p used", "σ² used"] + [t for _, t in SHOWN] + ["wall s per run", "CPU s per run", "runs"]
    lines = [f"# Automatic p and σ² vs a grid of p: {result['method']}", "",
             f"Tuned config (from `{STATE_FILE}`): `{json.dumps(result['chosen_params'])}`; only p (and σ²) change. "
             f"Reported split, seeds {result['seeds']}, mean ± std.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in result["rows"]:
        cells = [row["variant"], _ms(row, "ratio_used"), _ms(row, "noise_var_used")]
        cells += [_ms(row, key) for key, _ in SHOWN] + [_ms(row, "seconds", 1), _ms(row, "cpu_seconds", 1), str(row["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    grid_cpu = sum(r["cpu_seconds_total"] or 0 for r in grid_rows)
    auto = next(r for r in result["rows"] if r["variant"] == AUTO_LABEL)
    tuned = next((r for r in result["rows"] if r["variant"].startswith("tuned")), {"n": 0, "seconds_total": 0,
                                                                                  "cpu_seconds_total": 0})
    lines += ["", f"Best grid value by the tuner's rule (over seed means): **{result['best_grid']}** "
              f"({result['best_grid_reason']})." if grid_rows else "No grid of p was run.", "",
              "Compute (wall / CPU seconds of the runs when they ran: scoring, training, evaluation; CPU seconds "
              "are the process's, all threads; both depend on the machine's load):", "",
              f"- auto p: {auto['n']} run(s), {auto['seconds_total']:.0f} / {format_metric(auto['cpu_seconds_total'], 0)} s — "
              "p costs nothing beyond the run itself (one pass over the scores);",
              f"- the tuned p: the method's {result['tuning_trials']} tuning trials "
              f"({result['tuning_seconds']:.0f} / {result['tuning_cpu_seconds']:.0f} s; they searched p together with "
              f"the other settings) plus its {tuned['n']} rerun(s) ({tuned['seconds_total']:.0f} / "
              f"{format_metric(tuned['cpu_seconds_total'], 0)} s);"]
    if grid_rows:
        lines.append(f"- the grid of {len(grid_rows)} value(s) of p: {sum(r['n'] for r in grid_rows)} runs, "
                     f"{sum(r['seconds_total'] for r in grid_rows):.0f} / {grid_cpu:.0f} s.")
    lines.append("")
    return atomic_write_text(out_dir / f"auto_{result['method']}.md", "\n".join(lines))


def _ms(row: dict, key: str, digits: int = 3) -> str:
    mean, std = row.get(key), row.get(f"{key}_std")
    return "–" if mean is None else f"{format_metric(mean, digits)} ± {format_metric(std or 0.0, digits)}"
