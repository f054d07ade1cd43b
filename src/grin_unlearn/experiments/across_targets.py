"""One report over several sweeps of the same grid on different targets (``sweep --target-seed``).

A claim about a method should survive another target, not only another unlearning seed: a target
trained on another CPU, or with another seed, moves every digit. Given the folders of one sweep file
run on several targets, :func:`make_across_targets_report` writes ``report.md`` with

* each configuration's mean ± std over every (target, seed) cell, n = targets × seeds;
* the *between-target* spread: the std (ddof = 1) over targets of each target's seed mean, for the
  metrics that decide a verdict (forget quality, model utility, forget truth ratio, forget ROUGE-L);
* the targets' and oracles' own metrics, mean ± std over targets;
* the Pareto plot (forget quality against model utility, one point per configuration).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserInputError
from ..io_utils import atomic_write_text
from .aggregate import reference_rows, aggregate_cells, load_cell_rows, load_sweep_state, mean_std
from .report import format_metric, report_columns, config_label, mean_std_table, plot_quality_utility
from .sweep_spec import SEED_KEY

SPREAD_METRICS = (("forget_quality", "forget quality"), ("model_utility", "model utility"),
                  ("forget_truth_ratio", "forget truth ratio"), ("forget_rouge_l", "forget ROUGE-L"))
TARGET_KEY = "target"


def _identity(values: dict) -> str:
    return json.dumps({k: v for k, v in values.items() if k not in (SEED_KEY, TARGET_KEY)}, sort_keys=True, default=str)


def load_across_targets(sweep_dirs: list[str | Path]) -> tuple[list[dict], dict[str, list[dict]], list[str]]:
    """``(cell rows, {"target": rows, "oracle": rows}, unfinished)`` of every sweep folder; each cell
    row's ``target`` is its folder's index. The sweeps must share one grid."""
    if len(sweep_dirs) < 2:
        raise UserInputError("report: give at least two sweep folders of the same sweep file on different targets")
    rows, references, unfinished, grids = [], {"target": [], "oracle": []}, [], set()
    for index, folder in enumerate(sweep_dirs):
        state = load_sweep_state(folder)
        grids.add(json.dumps((state.get("spec") or {}).get("grid"), sort_keys=True))
        found, missing = load_cell_rows(folder, state)
        for row in found:
            row[TARGET_KEY] = index
        rows += found
        unfinished += [f"{folder}: {name}" for name in missing]
        for reference in reference_rows(Path(folder), state):
            references.setdefault(reference["method"], []).append(reference)
    if len(grids) > 1:
        raise UserInputError(f"report: the sweep folders {', '.join(map(str, sweep_dirs))} ran different grids")
    return rows, references, unfinished


def between_target_spread(rows: list[dict], metric: str) -> dict[str, float | None]:
    """Per configuration: the std over targets of the per-target mean of ``metric`` (None below 2 targets)."""
    per_target: dict[str, dict[int, list]] = {}
    for row in rows:
        per_target.setdefault(_identity(row.get("values") or {}), {}).setdefault(row[TARGET_KEY], []).append(row.get(metric))
    spread = {}
    for identity, targets in per_target.items():
        means = [mean_std(values)[0] for values in targets.values()]
        means = [m for m in means if m is not None]
        spread[identity] = mean_std(means)[1] if len(means) > 1 else None
    return spread


def reference_groups(references: dict[str, list[dict]]) -> list[dict]:
    """The target and oracle rows as groups: mean ± std over targets of every column."""
    groups = []
    for label, rows in references.items():
        if not rows:
            continue
        group = {"method": f"{label} (n = {len(rows)} targets)", "values": {}, "n": len(rows)}
        for key, _ in report_columns():
            group[key], group[f"{key}_std"] = mean_std([r.get(key) for r in rows])
        group["seconds"], group["seconds_std"] = None, None
        groups.append(group)
    return groups


def make_across_targets_report(sweep_dirs: list[str | Path], out_dir: str | Path) -> tuple[Path, str]:
    """Write ``out_dir/report.md`` and ``quality_utility.png``; return the report and its main table."""
    out_dir = Path(out_dir)
    rows, references, unfinished = load_across_targets(sweep_dirs)
    groups = aggregate_cells([{**r, "values": {k: v for k, v in (r.get("values") or {}).items() if k != SEED_KEY}}
                              for r in rows], group_out=TARGET_KEY)
    state = load_sweep_state(sweep_dirs[0])
    keys = [k for k in state.get("grid_keys", []) if k != SEED_KEY]
    table = mean_std_table(groups, keys)
    spreads = {metric: between_target_spread(rows, metric) for metric, _ in SPREAD_METRICS}
    header = ["configuration"] + [f"{title}: between targets" for _, title in SPREAD_METRICS]
    spread_lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups:
        identity = json.dumps(group["values"], sort_keys=True, default=str)
        spread_lines.append("| " + " | ".join([config_label(group["values"])]
                                              + [format_metric(spreads[m].get(identity)) for m, _ in SPREAD_METRICS]) + " |")
    spec_path = state.get("spec_path", "CONFIG.yaml")
    lines = [f"# Across targets: {Path(spec_path).stem}", "",
             f"{len(sweep_dirs)} targets ({', '.join(f'`{d}`' for d in sweep_dirs)}), each `grin-unlearn sweep "
             f"{spec_path} --target-seed S`; this page: `grin-unlearn report {' '.join(map(str, sweep_dirs))} "
             f"--out {out_dir}`.", ""]
    if unfinished:
        lines += [f"Unfinished cells: {', '.join(unfinished)}.", ""]
    lines += ["## Targets and oracles (mean ± std over targets)", "", mean_std_table(reference_groups(references), []), "",
              "## Configurations (mean ± std over every target and seed; n = cells)", "", table, "",
              "## Between-target spread (std over targets of each target's seed mean)", "", *spread_lines, "",
              "![forget quality vs model utility](quality_utility.png)", ""]
    plot_quality_utility(reference_groups(references) + groups, out_dir / "quality_utility.png",
                         title="forget quality vs model utility (mean ± std over targets × seeds)")
    return atomic_write_text(out_dir / "report.md", "\n".join(lines)), table
