"""Candidate rules for GRIN's automatic p against a grid of p: the table of docs/tuning.md.

    python scripts/auto_p_rules.py runs/tune_npo --split validation   # the tuner's validation authors
    python scripts/auto_p_rules.py runs/tune_npo --split reported     # forget10

Scores the phase's target with GRIN once (the retain pass keeping its squared batch gradients), computes
the p of each rule from the same scores:

* ``knee`` — Kneedle on the score-mass curve (:func:`grin_unlearn.selection.auto_ratio.knee_ratio`);
* ``balance, SGD step`` — the previous round's rule: the share of weights scoring above
  ``τ = Σ g_f² / Σ |g_f| (|g_r| + ε)`` (first-order gain and damage of a gradient step);
* ``balance, Adam step`` — the GRIN top-p cut maximising the share of ``Σ |g_f|`` minus the share of
  ``Σ (|g_r| + ε)`` (first-order gain and damage bound of a sign step);
* ``balance, Adam step / Fisher damage`` — :func:`grin_unlearn.selection.auto_ratio.balance_ratio`;
* ``coverage q`` — the smallest GRIN top-p set holding a share ``q`` of ``Σ |g_f|`` (the Adam-step
  forget gain; :func:`grin_unlearn.selection.auto_ratio.coverage_ratio`, the default rule at q = 0.95), for q in
  :data:`COVERAGE`;

then reruns the tuner's chosen GRIN + NPO config with each rule's p and with each p of ``--grid``, over
the tuner's seeds (or ``--seeds``; ``--only`` keeps the variants whose name starts with one of its
words), in ``<tune_dir>/auto_rules/<split>/`` (finished cells are reused). Prints a markdown table of
mean ± sample std (plus the median forget quality and the mean KS distance behind it, in forget
questions) and writes it, with the raw numbers, to ``<tune_dir>/auto_rules/<name>.md`` / ``.json``
(``--name``, default the split).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from grin_unlearn.selection.auto_knee import knee_ratio
from grin_unlearn.selection.auto_ratio import balance_ratio, coverage_ratio
from grin_unlearn.config import DEFAULT_AUTO_SHARE
from grin_unlearn.data.formatting import PromptFormat
from grin_unlearn.data.records import load_qa_split
from grin_unlearn.experiments.aggregate import mean_std
from grin_unlearn.experiments.tune import STATE_FILE, Method, run_method_cell
from grin_unlearn.experiments.tune_phases import embedded_validation, reported_phase
from grin_unlearn.experiments.truth_ratio_shift import forget_truth_ratios
from grin_unlearn.experiments.tune_spec import parse_tune_spec
from grin_unlearn.evaluation.reference_logs import oracle_view
from grin_unlearn.metrics import forget_ks_distance
from grin_unlearn.models import load_model, load_tokenizer
from grin_unlearn.scoring import score_influence

METRICS = ("forget_quality", "model_utility", "forget_keyword_accuracy", "retain_keyword_accuracy")
EPS = 1e-8
COVERAGE = (0.8, 0.9, 0.95)


def rule_ratios(phase) -> dict[str, float]:
    """p of every rule of the module docstring, from one GRIN scoring of the phase's target."""
    tokenizer, model = load_tokenizer(str(phase.model_dir)), load_model(str(phase.model_dir), dtype="float32")
    fmt = (PromptFormat.load(phase.model_dir) or PromptFormat()).with_max_length(128)
    result = score_influence(model, tokenizer, load_qa_split(phase.data, phase.forget),
                             load_qa_split(phase.data, phase.retain), scorer="grin", fmt=fmt, eps=EPS,
                             retain_squares=True)
    flat = lambda grads: torch.cat([grads[n].reshape(-1) for n in result.scores]).double()  # noqa: E731
    scores, g_f, g_r = flat(result.scores), flat(result.forget_grads).abs(), flat(result.retain_grads).abs()
    tau = float((g_f * g_f).sum() / (g_f * (g_r + EPS)).sum())
    order = scores.argsort(descending=True)
    gain, damage = g_f[order].cumsum(0) / g_f.sum(), (g_r + EPS)[order].cumsum(0) / (g_r + EPS).sum()
    coverage = {f"coverage q = {q:g}" + (" (default)" if q == DEFAULT_AUTO_SHARE else ""):
                coverage_ratio(result.scores, result.forget_grads, q).ratio for q in COVERAGE}
    return {**coverage, "knee": knee_ratio(result.scores).ratio,
            "balance, SGD step": float((scores > tau).sum()) / scores.numel(),
            "balance, Adam step": (int((gain - damage).argmax()) + 1) / scores.numel(),
            "balance, Adam step / Fisher damage (--auto-rule balance)":
                balance_ratio(result.scores, result.forget_grads, result.retain_squares).ratio}


def ks_questions(cell: Path, oracle_ratios: list[float]) -> float:
    """The KS distance behind forget quality, in forget questions: ``D · n`` from the cell's stored
    forget-set truth ratios against the oracle's (:func:`grin_unlearn.metrics.forget_ks_distance`)."""
    ratios = forget_truth_ratios(json.loads((cell / "eval.json").read_text()))
    return forget_ks_distance(ratios, oracle_ratios).value * len(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tune_dir", type=Path)
    parser.add_argument("--split", choices=("validation", "reported"), default="validation")
    parser.add_argument("--grid", type=float, nargs="*", default=[0.1, 0.2, 0.4, 0.6, 0.8])
    parser.add_argument("--seeds", type=int, nargs="*", help="seeds of the reruns (default: the tuner's)")
    parser.add_argument("--only", nargs="*", help="run only the variants whose name starts with one of these")
    parser.add_argument("--name", default=None, help="output name (default: the split)")
    args = parser.parse_args()
    state = json.loads((args.tune_dir / STATE_FILE).read_text())
    spec = parse_tune_spec(state["spec"], state["spec_path"])
    phase = (embedded_validation(spec, args.tune_dir, None, spec.setting.eval, print) if args.split == "validation"
             else reported_phase(spec, args.tune_dir, None, print))
    chosen = state["methods"]["npo_grin"]["chosen"]["params"]
    variants = [(name, ratio) for name, ratio in rule_ratios(phase).items()] + [(f"p = {g:g}", g) for g in args.grid]
    if args.only:
        variants = [(name, ratio) for name, ratio in variants if name.startswith(tuple(args.only))]
    seeds = args.seeds or spec.seeds
    oracle_ratios = oracle_view(phase.oracle).truth_ratios
    rows = []
    for name, ratio in variants:
        params = {**chosen, "selection.ratio": round(ratio, 6)}
        cells = [run_method_cell(spec, phase, Method("npo", "grin"), params, seed,
                                 args.tune_dir / "auto_rules" / args.split / f"p{params['selection.ratio']}" / f"seed{seed}",
                                 args.tune_dir) for seed in seeds]
        row = {"variant": name, "p": ratio, "seeds": seeds,
               "ks_questions_per_seed": [ks_questions(args.tune_dir / c["dir"], oracle_ratios) for c in cells]}
        row["ks_questions"] = statistics.mean(row["ks_questions_per_seed"])
        for key in METRICS:
            row[key], row[f"{key}_std"] = mean_std([c[key] for c in cells])
            row[f"{key}_per_seed"] = [c[key] for c in cells]
        rows.append(row)
        print(name, f"p={ratio:.4f}", " ".join(f"{k}={row[k]:.4f}±{row[k + '_std']:.4f}" for k in METRICS), flush=True)
    header = ["variant", "p"] + list(METRICS) + ["forget_quality median", "KS distance (questions)"]
    lines = [f"# Automatic-p rules against a grid of p ({args.split} split, seeds {seeds}, mean ± std)", "",
             f"GRIN + NPO, the tuner's chosen config with only p changed: `{json.dumps(chosen)}`.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join([row["variant"], f"{row['p']:.3f}"] +
                                       [f"{row[k]:.4f} ± {row[k + '_std']:.4f}" for k in METRICS] +
                                       [f"{statistics.median(row['forget_quality_per_seed']):.4f}",
                                        f"{row['ks_questions']:.1f}"]) + " |")
    out = args.tune_dir / "auto_rules"
    name = args.name or args.split
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
