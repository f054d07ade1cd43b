"""Issue #24's study report: the parts that scripts/robustness_study.py wrote, pooled over targets and seeds.

Each unlearned model is labelled ``<method>_seed<k>`` (a sweep cell); the method's rows pool its seeds
over every target that attacked it (n in the table), mean ± std (sample std). Target and oracle rows pool
the targets. Shares are ``(m_attacked − m_oracle_attacked) / (m_target − m_oracle)`` per model, against
its own target and oracle (grin_unlearn.evaluation.attacks.recovery).

Usage: python scripts/robustness_report.py [runs/robustness]  -> prints the tables, writes report.md and relearn.png there
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

# Truth ratio and forget quality are left out of the shares: the target's and the oracle's forget truth
# ratios differ by less than 0.02 on this benchmark, so its share divides noise by almost nothing, and
# every unlearned model's forget quality is already the target's (far below 0.05) before any attack.
METRICS = (("forget_keyword_accuracy", "keyword acc."), ("forget_rouge_l", "ROUGE-L"))


def method_of(label: str) -> str:
    return re.sub(r"_seed\d+$", "", label)


def spread(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def load_parts(root: Path, attack: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob(f"{attack}-t*/attack.json"))]


def pooled(parts: list[dict], value) -> dict[str, list[float]]:
    """``{method: [value(part, label) for every part and label of that method]}``; target and oracle as such."""
    out: dict[str, list] = {}
    for part in parts:
        for label in part["runs"]:
            out.setdefault(label if label in ("target", "oracle") else method_of(label), []).append(value(part, label))
    return out


def method_values(parts: list[dict], method: str, value) -> list:
    """``value(part, label)`` for every model of ``method`` (or the target / oracle) in every part."""
    return pooled(parts, value).get(method, [])


def quantization_table(parts: list[dict], setting: str) -> list[str]:
    """Per method: model utility, forget keyword accuracy and its recovery share, ROUGE-L's share, each
    unattacked → after ``setting``; and the weights whose RTN bucket differs from the target's."""
    if not parts:
        return []
    header = ["model", "n", "model utility", "keyword acc.", "keyword share", "ROUGE-L share",
              "changed buckets", "of selected"]
    lines = [f"**{setting}** (unattacked → quantized)", "", "| " + " | ".join(header) + " |",
             "|---" * len(header) + "|"]
    for method, labels in pooled(parts, lambda part, label: label).items():
        def arrow(fn):
            return f"{spread(method_values(parts, method, lambda p, lb: fn(p, lb, 'none')))} → " \
                   f"{spread(method_values(parts, method, lambda p, lb: fn(p, lb, setting)))}"

        def share(metric):
            return lambda p, lb, st: p["recovery"].get(lb, {}).get(st, {}).get(metric, {}).get("recovery")
        cells = [method, str(len(labels)),
                 arrow(lambda p, lb, st: p["runs"][lb][st].get("model_utility")),
                 arrow(lambda p, lb, st: p["runs"][lb][st].get("forget_keyword_accuracy")),
                 arrow(share("forget_keyword_accuracy")) if method not in ("target", "oracle") else "–",
                 arrow(share("forget_rouge_l")) if method not in ("target", "oracle") else "–",
                 spread(method_values(parts, method, lambda p, lb: p["changed_buckets"].get(lb, {})
                                      .get(setting, {}).get("share"))),
                 spread(method_values(parts, method, lambda p, lb: p.get("changed_buckets_selected", {})
                                      .get(lb, {}).get(setting, {}).get("share")))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def relearn_table(parts: list[dict], title: str) -> list[str]:
    """Per method: probe-half keyword accuracy and ROUGE-L at each step, the keyword-accuracy share at
    each step and the ROUGE-L share before and at the last step."""
    if not parts:
        return []
    steps = [str(k) for k in parts[0]["steps"]]
    last = steps[-1]
    header = ["model", "n"] + [f"keyword acc. @{k}" for k in steps] + [f"ROUGE-L @{k}" for k in steps] + [
        f"keyword acc. share @{k}" for k in steps] + [f"ROUGE-L share @{k}" for k in (steps[0], last)]
    lines = [f"**{title}** (lr {parts[0]['lr']}, {parts[0]['batch_size']} records a step, relearn on "
             f"{parts[0]['relearn_on']}; the probe half)", "", "| " + " | ".join(header) + " |",
             "|---" * len(header) + "|"]
    for method, labels in pooled(parts, lambda part, label: label).items():
        def values(fn, m=method):
            return method_values(parts, m, fn)
        cells = [method, str(len(labels))]
        for metric in ("forget_keyword_accuracy", "forget_rouge_l"):
            cells += [spread(values(lambda p, lb, k=k, mt=metric: p["runs"][lb][k].get(mt))) for k in steps]
        cells += [spread(values(lambda p, lb, mt=metric, st=k: p["recovery"].get(lb, {}).get(st, {}).get(mt, {})
                                .get("recovery"))) for metric, at in (("forget_keyword_accuracy", steps),
                                                                      ("forget_rouge_l", (steps[0], last)))
                  for k in at]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def plot_relearn(parts: list[dict], path: Path, metric: str = "forget_keyword_accuracy") -> None:
    """Probe-half ``metric`` against relearning steps, one line per method (mean, band = ± std)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = parts[0]["steps"]
    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    by_method: dict[str, list[list[float]]] = {}
    for part in parts:
        for label, runs in part["runs"].items():
            key = label if label in ("target", "oracle") else method_of(label)
            by_method.setdefault(key, []).append([runs[str(k)].get(metric) for k in steps])
    for method, curves in by_method.items():
        means = [statistics.fmean(c[i] for c in curves) for i in range(len(steps))]
        stds = [statistics.stdev(c[i] for c in curves) if len(curves) > 1 else 0.0 for i in range(len(steps))]
        style = {"target": "k--", "oracle": "k:"}.get(method, "-o")
        ax.plot(steps, means, style, label=f"{method} (n={len(curves)})", markersize=3)
        ax.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], alpha=0.12)
    ax.set_xlabel("relearning steps (4 records a step)")
    ax.set_ylabel(f"{metric} on the probe half")
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def main(root: Path) -> None:
    lines = ["# Robustness of the TOFU-size study's models", ""]
    for suffix, heading in (("", "The study's models (lr 8.6e-4)"), ("-small", "The small-lr models (lr 1e-5, target 0)")):
        lines += [f"## {heading}", ""]
        for attack in ("quantize", "quantize32"):
            parts = load_parts(root, attack + suffix)
            for setting in (parts[0]["settings"] if parts else []):
                lines += quantization_table(parts, setting)
        for attack, title in (("relearn", "Relearning on half of each forget author's questions"),
                              ("retain", "Relearning on retain90 records (no forget facts)")):
            parts = load_parts(root, attack + suffix)
            lines += relearn_table(parts, title)
            if parts and attack == "relearn":
                plot_relearn(parts, root / f"relearn{suffix}.png")
                lines += [f"![relearning](relearn{suffix}.png)", ""]
    text = "\n".join(lines)
    (root / "report.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/robustness"))
