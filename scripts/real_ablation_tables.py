"""Issue #33, part 2: the tables of docs/results/real_ablations.md from the runs' own eval.json files.

    python scripts/real_ablation_tables.py [--runs runs]      # or --runs docs/results/real_study

Rows, each over its 3 seeds (mean ± sample std, and forget quality per seed):
- p: GRIN + NPO's auto p and grid cells (``tune_real_npo_fixed/auto_npo_grin.json``), the tuned
  reruns (``tune_real_npo_fixed/tune.json``, p 0.6), and the random mask at p 0.2 / 0.4
  (``real_random_p_grid``) and 0.6 (``real_random_matched``), where they have finished;
- σ²: the sweep ``real_ablation_noise`` (σ² 0, 1e-4, 1e-3, 1e-2) and the tuned reruns (σ² 1e-5).

``--weight-rms`` prints instead the root mean square of each weight matrix of the real target, per
module type (smallest, largest, mean): the scale an absolute σ² is read against.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

METRICS = (("forget_quality", "forget quality ↑"), ("model_utility", "model utility ↑"),
           ("forget_keyword_accuracy", "forget keyword acc ↓"), ("forget_rouge_l", "forget ROUGE-L ↓"),
           ("retain_keyword_accuracy", "retain keyword acc ↑"), ("knowledge_accuracy", "knowledge acc ↑"))


def row(label: str, cells: list[Path]) -> str | None:
    """One table row over the finished cells (folders with eval.json); None when none has finished."""
    evals = [json.loads((c / "eval.json").read_text()) for c in cells if (c / "eval.json").is_file()]
    if not evals:
        return None
    values = {key: [e["aggregates"][key] for e in evals] for key, _ in METRICS}
    spread = ["–" if None in v else f"{statistics.fmean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1
              else f"{v[0]:.3f}" for v in values.values()]  # None: the oracle has no forget quality of its own
    seeds = " / ".join("–" if v is None else f"{v:.2f}" for v in values["forget_quality"])
    return f"| {label} (n={len(evals)}) | " + " | ".join(spread) + f" | {seeds} |"


def table(rows: list[str | None]) -> str:
    header = "| run | " + " | ".join(name for _, name in METRICS) + " | forget quality per seed |"
    return "\n".join([header, "|---|" + "---|" * (len(METRICS) + 1)] + [r for r in rows if r])


def sweep_cells(folder: Path, stem: str) -> list[Path]:
    return sorted((folder / "cells").glob(f"{stem}_seed*"))


def weight_rms() -> None:
    from grin_unlearn.experiments.real_benchmark import prepare_real
    from grin_unlearn.models import load_model

    by_type: dict[str, list[float]] = {}
    for name, weight in load_model(str(prepare_real().target), device="cpu").named_parameters():
        if weight.dim() == 2:
            by_type.setdefault(name.split(".")[-2], []).append(float(weight.detach().pow(2).mean().sqrt()))
    print("| module | matrices | RMS smallest | largest | mean |\n|---|---:|---:|---:|---:|")
    for module, values in by_type.items():
        print(f"| {module} | {len(values)} | {min(values):.3f} | {max(values):.3f} | {statistics.fmean(values):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--weight-rms", action="store_true", help="the target's weight scale per module type")
    args = parser.parse_args()
    if args.weight_rms:
        return weight_rms()
    runs = args.runs
    tune = runs / "tune_real_npo_fixed"
    tuned = [tune / f["dir"] for f in json.loads((tune / "tune.json").read_text())["methods"]["npo_grin"]["finals"]]
    auto = json.loads((tune / "auto_npo_grin.json").read_text())
    grin = {r["variant"]: [tune / c["dir"] for c in r["cells"]] for r in auto["rows"] if "cells" in r}
    random_grid = runs / "real_random_p_grid"
    p_rows = [row("GRIN, auto p (coverage: p 0.794)", grin["auto p (coverage)"])]
    for p in ("0.2", "0.4"):
        p_rows += [row(f"GRIN, p {p}", grin[f"p = {p}"]),
                   row(f"random, p {p}", sweep_cells(random_grid, f"npo_random_p{p}"))]
    p_rows += [row("GRIN, p 0.6 (tuned)", tuned),
               row("random, p 0.6", sweep_cells(runs / "real_random_matched", "npo_random")),
               row("GRIN, p 0.8", grin["p = 0.8"])]
    noise = runs / "real_ablation_noise"
    s_rows = [row("σ² 0", sweep_cells(noise, "npo_grin_s0")), row("σ² 1e-5 (tuned)", tuned)]
    s_rows += [row(f"σ² {s}", sweep_cells(noise, f"npo_grin_s{s}")) for s in ("1e-04", "1e-03", "1e-02")]
    print("## p\n\n" + table(p_rows) + "\n\n## σ²\n\n" + table(s_rows))


if __name__ == "__main__":
    main()
