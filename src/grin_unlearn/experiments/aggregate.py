"""Seed aggregation and the report of a sweep folder (``report.md`` plus PNG plots).

A *cell row* is :func:`grin_unlearn.experiments.report.metrics_row` of a cell's ``eval.json`` (the
:func:`~.report.report_columns` metrics, plus ``seconds`` = the unlearning run's wall time from
``run.json``) with the cell's ``name`` and grid ``values``. :func:`aggregate_cells` groups rows that differ only in
``train.seed``; :func:`write_sweep_report` reads a folder written by
:func:`grin_unlearn.experiments.sweep.run_sweep` and writes:

* ``report.md``: mean ± std per configuration, with the target and the oracle on top;
* ``quality_utility.png``: forget quality against model utility, one point per configuration;
* ``rouge_vs_ratio.png`` / ``rouge_vs_noise.png``: forget ROUGE-L against p / σ², when the grid varies them;
* ``density.png``: the share of selected weights per module type and layer, averaged over GRIN cells.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from ..errors import UserInputError
from ..evaluation import aggregate, load_eval
from ..io_utils import atomic_write_text
from ..masks import plot_density
from ..run_dir import EVAL_FILE, finished_timing, is_evaluated
from .report import (config_label, report_columns, mean_std_table, metrics_row, plot_metric_vs, plot_quality_utility)
from .sweep_spec import SEED_KEY, SWEEP_FILE


def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof = 1) of the values that are present (not None/NaN).

    ``std = sqrt(sum((x - mean)^2) / (n - 1))`` for n > 1 present values, 0.0 for one, (None, None)
    for none.
    """
    present = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not present:
        return None, None
    return statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else 0.0


def aggregate_cells(cells: list[dict], group_out: str = SEED_KEY) -> list[dict]:
    """Group cell rows whose grid ``values`` agree except on ``group_out`` (the seed); per group return
    ``{"method": label, "values", "n", "seeds", "cells", <metric>: mean, <metric>_std: std}`` for every
    :func:`~.report.report_columns` metric and ``seconds``, groups in order of first appearance.

    ``n`` counts the cells of the group; a metric missing from some cells is averaged over the cells
    that have it. ``std`` is the sample standard deviation (ddof = 1), 0.0 when one value is present.
    """
    groups: dict[str, dict] = {}
    for cell in cells:
        values = {k: v for k, v in (cell.get("values") or {}).items() if k != group_out}
        identity = json.dumps(values, sort_keys=True, default=str)
        groups.setdefault(identity, {"values": values, "members": []})["members"].append(cell)
    keys = [key for key, _ in report_columns()] + ["seconds"]
    rows = []
    for group in groups.values():
        members = group["members"]
        row = {"method": config_label(group["values"]), "values": group["values"], "n": len(members),
               "seeds": [(m.get("values") or {}).get(group_out) for m in members],
               "cells": [m.get("name") for m in members]}
        for key in keys:
            row[key], row[f"{key}_std"] = mean_std([m.get(key) for m in members])
        rows.append(row)
    return rows


# --- reading a sweep folder ----------------------------------------------------------------------

def load_sweep_state(sweep_dir: str | Path) -> dict:
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise UserInputError(f"{sweep_dir}: no {SWEEP_FILE} (expected a folder written by `grin-unlearn sweep`)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserInputError(f"{path}: not a readable {SWEEP_FILE} ({err})") from None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def load_cell_rows(sweep_dir: str | Path, state: dict) -> tuple[list[dict], list[str]]:
    """Rows of the finished cells (``eval.json`` and ``run.json`` present) and the names of the others."""
    sweep_dir = Path(sweep_dir)
    rows, unfinished = [], []
    for entry in state.get("cells", []):
        cell_dir = sweep_dir / entry["dir"]
        timing = finished_timing(cell_dir)
        if timing is None or not is_evaluated(cell_dir):
            unfinished.append(entry["name"])
            continue
        row = metrics_row(entry["name"], load_eval(cell_dir / EVAL_FILE), timing.get("total"))
        config = (_read_json(cell_dir / "config.json") or {}).get("config") or {}
        row.update(name=entry["name"], values=entry.get("values") or {}, dir=cell_dir,
                   scorer=(config.get("selection") or {}).get("scorer"))
        rows.append(row)
    return rows, unfinished


def reference_rows(sweep_dir: Path, state: dict) -> list[dict]:
    """Metric rows of the sweep's target and oracle evaluations (those present)."""
    rows = []
    for label, rel in (("target", state.get("target_eval")), ("oracle", state.get("oracle_eval"))):
        if rel is None:
            continue
        path = Path(rel) if Path(rel).is_absolute() else sweep_dir / rel
        if path.is_file():
            result = load_eval(path)
            if label == "oracle":  # forget quality of the oracle against itself (1.0 by definition)
                result["aggregates"] = aggregate(result["sets"], result)
            rows.append(metrics_row(label, result))
    return rows


def average_density(reports: list[dict]) -> dict:
    """The mean of several ``density.json`` reports: the density of every module type / group / layer
    averaged over the reports that have it (``selected``/``total`` summed), in the shape
    :func:`grin_unlearn.masks.plot_density` reads."""
    out = {"overall": _mean_stat([r["overall"] for r in reports])}
    for section in ("by_module", "by_group", "by_layer"):
        names = list(dict.fromkeys(name for r in reports for name in r.get(section, {})))
        out[section] = {name: _mean_stat([r[section][name] for r in reports if name in r.get(section, {})])
                        for name in names}
    return out


def _mean_stat(stats: list[dict]) -> dict:
    return {"selected": sum(s["selected"] for s in stats), "total": sum(s["total"] for s in stats),
            "density": statistics.fmean(s["density"] for s in stats)}


# --- the report ----------------------------------------------------------------------------------

def make_sweep_report(sweep_dir: str | Path) -> tuple[Path, str]:
    """Write ``report.md`` and the plots of ``sweep_dir``; return its path and the markdown table."""
    sweep_dir = Path(sweep_dir)
    state = load_sweep_state(sweep_dir)
    rows, unfinished = load_cell_rows(sweep_dir, state)
    groups = aggregate_cells(rows)
    references = reference_rows(sweep_dir, state)
    grid = (state.get("spec") or {}).get("grid") or {}
    keys = [k for k in state.get("grid_keys", list(grid)) if k != SEED_KEY]
    table = mean_std_table(groups, keys, references)

    spec_path = state.get("spec_path", "CONFIG.yaml")
    seeds = grid.get(SEED_KEY, [None])
    lines = [f"# Sweep report: {Path(spec_path).stem}", "",
             f"Sweep file `{spec_path}`, run by `grin-unlearn sweep {spec_path} --out {sweep_dir}`; "
             f"refreshed by `grin-unlearn report {sweep_dir}`.", "",
             f"{len(groups)} configurations × {len(seeds)} seed(s): {len(rows)} of {len(state.get('cells', []))} "
             f"cells finished (sweep status: {state.get('status', 'unknown')}).", "",
             f"Base settings (the grid overrides them): `{json.dumps((state.get('spec') or {}).get('base') or {})}`"
             + ("; `exclude_redundant`: one full fine-tune (scorer `none`, no mask, σ² = 0) per combination "
                "of the other keys" if state.get("exclude_redundant") else "") + ".", ""]
    if unfinished:
        lines += [f"Unfinished cells (rerun the sweep to complete them): {', '.join(unfinished)}.", ""]
    lines += [table, "",
              "Mean ± sample std (ddof = 1; 0 for a single seed) over the seeds of each configuration; n = seeds. "
              "\"–\": not applicable (a full fine-tune, scorer `none`, has no p or σ²). Forget quality: KS-test "
              "p-value of the forget truth ratios against the oracle's (TOFU). Model utility: harmonic mean of "
              "probability, ROUGE-L and truth ratio on retain and world facts. Wall time: the unlearning run "
              "(scoring + training) of one cell.", ""]

    points = [dict(r) for r in references] + groups
    plot_quality_utility(points, sweep_dir / "quality_utility.png",
                         title="forget quality vs model utility (mean ± std over seeds)")
    lines += ["![forget quality vs model utility](quality_utility.png)", ""]
    rouge_refs = [(f"{r['method']}", r.get("forget_rouge_l")) for r in references]
    for key, name, log_x in (("selection.ratio", "rouge_vs_ratio.png", False),
                             ("noise.noise_var", "rouge_vs_noise.png", True)):
        if len(grid.get(key) or []) > 1:
            plot_metric_vs(groups, key, sweep_dir / name, "forget_rouge_l", log_x=log_x, references=rouge_refs)
            lines += [f"![forget ROUGE-L vs {key}]({name})", ""]

    densities = [d for r in rows if r.get("scorer") == "grin" and (d := _read_json(r["dir"] / "density.json"))]
    if densities:
        given = {(r.get("values") or {}).get("selection.ratio") for r in rows if r.get("scorer") == "grin"}
        ratios = sorted(f"{p:g}" if isinstance(p, (int, float)) else str(p) for p in given - {None, 0})
        plot_density(average_density(densities), sweep_dir / "density.png",
                     title=f"GRIN selection density, mean over {len(densities)} cells")
        lines += [f"Share of selected weights per module type and layer, averaged over the {len(densities)} GRIN "
                  f"cells" + (f" (p ∈ {{{', '.join(ratios)}}})" if ratios else "") + ".", "",
                  "![density of selected weights](density.png)", ""]
    return atomic_write_text(sweep_dir / "report.md", "\n".join(lines)), table


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write (or refresh) ``sweep_dir/report.md`` and its PNG plots; return the report's path."""
    return make_sweep_report(sweep_dir)[0]
