"""Issue #33, part 4, on the real model: does it stay forgotten? Both attacks on the study's chosen runs.

    python scripts/real_robustness.py [--out runs/real_robustness] [--parts ...]   # resumable, by part
    python scripts/real_robustness.py --report-only                               # tables -> OUT/report.md

Attacked together with the target and the oracle (so each share is against the same attack on both):
the equal-budget tune's chosen GRIN + NPO, unmasked NPO and WAGLE + NPO (``grin-unlearn tune
configs/tune/real_npo.yaml --out runs/tune_real_npo_fixed``: its final/ reruns) and a random mask at
GRIN's setting (configs/real_random_matched.yaml), 3 seeds each. Parts (each OUT/<part>/attack.json, skipped once written):
  quantize     RTN per output channel, 8 and 4 bits
  quantize32   4-bit RTN in groups of 32
  relearn-<lr> relearning on half of each forget author's questions (4 a step, AdamW at constant lr,
               evaluated after 0, 10 and 25 steps on the other half), lr 5e-5 (the hand-run's), 2e-4, 1e-3
Every attacked model is evaluated with the ``fast`` protocol (32 new tokens) under bf16 autocast, the
study's precision. The share is ``(m_attacked − m_oracle_attacked) / (m_target − m_oracle)``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from grin_unlearn.cli import main as cli
from grin_unlearn.experiments.real_benchmark import prepare_real
from grin_unlearn.io_utils import atomic_write_text

METHODS = {  # label -> model folder of seed k: the equal-budget tune's chosen runs after the stale-cast fix
    "grin": "runs/tune_real_npo_fixed/final/npo_grin/f6b812590007/seed{k}/model",
    "random": "runs/real_random_matched/cells/npo_random_seed{k}/model",
    "none": "runs/tune_real_npo_fixed/final/npo_none/01fc2a76b62d/seed{k}/model",
    "wagle": "runs/tune_real_npo_fixed/final/npo_wagle/566c430fe365/seed{k}/model",
}
LABELS = {"grin": "GRIN + NPO, tuned (p 0.60)", "random": "random mask + NPO at GRIN's setting (p 0.60)",
          "none": "NPO unmasked, tuned", "wagle": "WAGLE + NPO, tuned (p 0.53)"}
RELEARN_LRS = ("5e-5", "2e-4", "1e-3")
RELEARN_STEPS = ("0", "10", "25")
RELEARN = {f"relearn-{lr}": ["relearn", "--steps", *RELEARN_STEPS, "--lr", lr, "--relearn-batch-size", "4"]
           for lr in RELEARN_LRS}
# In the order they run: the most telling first, so a cut-short run still answers most of the question.
ATTACKS = {"quantize32": ["quantize", "--bits", "4", "--group-size", "32", "--max-items", "40"],
           "relearn-2e-4": RELEARN["relearn-2e-4"], "relearn-1e-3": RELEARN["relearn-1e-3"],
           "quantize": ["quantize", "--bits", "8", "4", "--group-size", "0", "--max-items", "40"],
           "relearn-5e-5": RELEARN["relearn-5e-5"]}
METRICS = (("forget_keyword_accuracy", "keyword acc"), ("forget_rouge_l", "ROUGE-L"))


def models() -> list[str]:
    items = [f"{method}_seed{k}={path.format(k=k)}" for method, path in METHODS.items() for k in range(3)
             if Path(path.format(k=k)).is_dir()]
    if not items:
        raise SystemExit("no unlearned model found: run the tune of configs/tune/real_npo.yaml (--out "
                         "runs/tune_real_npo_fixed) and the sweep of configs/real_random_matched.yaml first")
    return items


def run_part(part: str, out: Path) -> None:
    folder = out / part
    if (folder / "attack.json").exists():
        print(f"{part}: done already", flush=True)
        return
    assets = prepare_real()
    config = assets.config
    args = ["attack", *ATTACKS[part], "--models", *models(), "--target", str(assets.target), "--oracle",
            str(assets.oracle), "--data", str(assets.world), "--forget", config.forget_split, "--retain",
            config.retain_split, "--precision", "bf16", "--out", str(folder)]
    start = time.time()
    if cli(args) != 0:
        raise SystemExit(f"{part}: the attack failed")
    print(f"{part}: {time.time() - start:.0f} s", flush=True)


def spread(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def seeds_of(mapping: dict, method: str) -> list:
    return [value for label, value in mapping.items() if label.rsplit("_seed", 1)[0] == method]


def report(out: Path) -> str:
    lines = ["# Does it stay forgotten? The real model's chosen runs under both attacks (issue #33)", "",
             "Made by `python scripts/real_robustness.py --report-only`; the module docstring says what each "
             "part does. Shares: `(m_attacked − m_oracle_attacked) / (m_target − m_oracle)`, mean ± std over "
             "3 seeds (0: no more than the oracle after the same attack; 1: the target's level).", ""]
    for part in ("quantize", "quantize32"):
        path = out / part / "attack.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        settings = [s for s in data["settings"] if s != "none"]
        lines += [f"## Quantization: {', '.join(settings)}", "",
                  "| model | " + " | ".join(f"{s}: {name} share" for s in settings for _, name in METRICS)
                  + " | " + " | ".join(f"{s}: weights changing bucket" for s in settings) + " |",
                  "|---|" + "---|" * (len(settings) * (len(METRICS) + 1))]
        for method in METHODS:
            recovery = seeds_of(data["recovery"], method)
            if not recovery:
                continue
            buckets = seeds_of(data.get("changed_buckets", {}), method)
            cells = [spread([r[s][m]["recovery"] for r in recovery]) for s in settings for m, _ in METRICS]
            cells += [spread([100 * b[s]["share"] for b in buckets]) + " %" for s in settings]
            lines.append(f"| {LABELS[method]} (n={len(recovery)}) | " + " | ".join(cells) + " |")
        for reference in ("target", "oracle"):
            runs = data["runs"][reference]
            cells = [f"{runs[s][m]:.3f} (from {runs['none'][m]:.3f})" for s in settings for m, _ in METRICS]
            lines.append(f"| {reference}: the metric itself | " + " | ".join(cells) + " |" + " – |" * len(settings))
        lines.append("")
    relearn = {lr: json.loads((out / f"relearn-{lr}" / "attack.json").read_text())
               for lr in RELEARN_LRS if (out / f"relearn-{lr}" / "attack.json").exists()}
    if relearn:
        steps = [s for s in RELEARN_STEPS if s != "0"]
        lines += ["## Relearning on half of each forget author's questions, the other half probed", "",
                  "Forget keyword accuracy on the probe half (↓ is forgotten) after k steps, and each method's share; "
                  "the target's and oracle's own values show what the lr does to a model that knows (drift of the "
                  "target) or never knew.", "",
                  "| lr | model | " + " | ".join(f"keyword acc, {k} steps" for k in ("0", *steps))
                  + " | " + " | ".join(f"share, {k} steps" for k in steps) + " |",
                  "|---|---|" + "---|" * (1 + 2 * len(steps))]
        metric = "forget_keyword_accuracy"
        for lr, data in relearn.items():
            for reference in ("target", "oracle"):
                runs = data["runs"][reference]
                lines.append(f"| {lr} | {reference} | " + " | ".join(f"{runs[k][metric]:.3f}" for k in ("0", *steps))
                             + " |" + " – |" * len(steps))
            for method in METHODS:
                runs = seeds_of(data["runs"], method)
                if not runs:
                    continue
                recovery = seeds_of(data["recovery"], method)
                lines.append(f"| {lr} | {LABELS[method]} (n={len(runs)}) | "
                             + " | ".join(spread([r[k][metric] for r in runs]) for k in ("0", *steps)) + " | "
                             + " | ".join(spread([r[k][metric]["recovery"] for r in recovery]) for k in steps) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/real_robustness", type=Path)
    parser.add_argument("--parts", nargs="+", default=list(ATTACKS), choices=list(ATTACKS))
    parser.add_argument("--report-only", action="store_true", help="write OUT/report.md from the finished parts")
    args = parser.parse_args()
    if not args.report_only:
        for part in args.parts:
            run_part(part, args.out)
    text = report(args.out)
    atomic_write_text(args.out / "report.md", text)
    print(text)


if __name__ == "__main__":
    main()
