"""Both attacks on a set of models: the unlearned ones, the target and the oracle, so that each
unlearned model's recovery share (:mod:`.recovery`) is measured against the same attacks on the two
reference models. Used by ``grin-unlearn attack`` and by the demo's robustness section.

``paths`` maps a label to a model folder; the labels ``target`` and ``oracle`` are the two reference
models, every other label is an unlearned model. Evaluation is :func:`grin_unlearn.evaluation.evaluate`
on the given sets; forget quality is taken against the unattacked oracle, which is compared with
itself (its own forget quality is 1).
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserInputError
from ..aggregates import aggregate
from ..runner import evaluate
from .quantize import QuantizeConfig, changed_buckets, quantize_model
from .recovery import recovery_table
from .relearn import relearn_curve, split_relearn_probe

REFERENCES = ("target", "oracle")


@dataclass(frozen=True)
class RelearnSettings:
    """The relearning attack: evaluate after each of ``steps`` (AdamW, constant ``lr``, ``batch_size``
    records a step) on the relearn half (``on="forget"``) or as many retain records (``on="retain"``).
    ``scope="forget"`` evaluates the probe half alone (the recovery metrics are forget metrics, and it
    is several times cheaper); ``"all"`` every set as well (model utility after relearning)."""

    steps: tuple[int, ...] = (0, 5, 10, 20)
    lr: float = 1e-3
    batch_size: int = 4
    on: str = "forget"
    seed: int = 0
    scope: str = "forget"

    def __post_init__(self):
        if self.on not in ("forget", "retain"):
            raise UserInputError(f"--relearn-on: expected forget or retain, got {self.on!r}")
        if self.scope not in ("forget", "all"):
            raise UserInputError(f"--relearn-eval: expected forget or all, got {self.scope!r}")


class _Evaluator:
    """Evaluates models on fixed sets; remembers the unattacked oracle's result as forget quality's reference."""

    def __init__(self, tokenizer, sets: dict, roles: dict, fmt, config):
        self.tokenizer, self.sets, self.roles, self.fmt, self.config = tokenizer, sets, roles, fmt, config
        self.oracle: dict | None = None

    def __call__(self, model, unattacked_oracle: bool = False) -> dict:
        result = evaluate(model, self.tokenizer, self.sets, self.roles, self.fmt, self.config, self.oracle)
        if unattacked_oracle:
            result["aggregates"] = aggregate(result["sets"], result)
            self.oracle = result
        return result["aggregates"]


def _ordered(paths: dict[str, str | Path]) -> list[str]:
    """The oracle first (forget quality's reference), then the target, then the unlearned models."""
    return [r for r in ("oracle", "target") if r in paths] + [label for label in paths if label not in REFERENCES]


def _recovery(runs: dict[str, dict], before: str) -> dict:
    """``{label: {setting: recovery table}}`` for every unlearned label, when target and oracle were attacked."""
    if not set(REFERENCES) <= set(runs):
        return {}
    return {label: {setting: recovery_table(runs[label][setting], runs["oracle"][setting], runs["target"][before],
                                            runs["oracle"][before]) for setting in runs[label]}
            for label in runs if label not in REFERENCES}


def quantization_study(paths: dict[str, str | Path], load, tokenizer, sets: dict, roles: dict, fmt, config,
                       settings: list[QuantizeConfig], masks: dict[str, dict] | None = None) -> dict:
    """Every model unattacked (``none``) and after each quantization setting; recovery shares and, for
    each unlearned model, the weights whose RTN bucket differs from the target's: over every quantized
    weight (``changed_buckets``) and, for a label with an entry in ``masks`` (name -> bool tensor), over
    the weights its mask selected (``changed_buckets_selected``)."""
    evaluate_model = _Evaluator(tokenizer, sets, roles, fmt, config)
    runs: dict[str, dict] = {}
    target = load(paths["target"]) if "target" in paths else None
    changed, changed_selected = {}, {}
    for label in _ordered(paths):
        model = target if label == "target" else load(paths[label])
        runs[label] = {"none": evaluate_model(model, unattacked_oracle=label == "oracle")}
        for setting in settings:
            attacked = copy.deepcopy(model)
            info = quantize_model(attacked, setting)
            runs[label][setting.label] = {**evaluate_model(attacked), "quantization": info}
            del attacked
        if target is not None and label not in REFERENCES:
            changed[label] = {s.label: changed_buckets(model, target, s) for s in settings if s.bits != 16}
            if (masks or {}).get(label) is not None:
                changed_selected[label] = {s.label: changed_buckets(model, target, s, masks[label])
                                           for s in settings if s.bits != 16}
    return {"attack": "quantize", "settings": [s.label for s in settings], "runs": runs,
            "recovery": _recovery(runs, "none"), "changed_buckets": changed,
            "changed_buckets_selected": changed_selected}


def relearn_study(paths: dict[str, str | Path], load, tokenizer, sets: dict, roles: dict, fmt, config,
                  settings: RelearnSettings) -> dict:
    """Every model relearnt on the relearn half of the forget set and evaluated on the probe half after
    each number of steps; recovery shares per step against the target and oracle before the attack."""
    forget = next((name for name, role in roles.items() if role == "forget"), None)
    if forget is None:
        raise UserInputError("relearn: the sets have no forget set (expected a TOFU-style forget split)")
    records = sets[forget]
    relearn_idx, probe_idx = split_relearn_probe(records, settings.seed)
    if not relearn_idx:
        raise UserInputError(f"relearn: set '{forget}' has no entity with 2 or more records to split")
    retain = next((sets[n] for n, role in roles.items() if role == "retain"), [])
    train = [records[i] for i in relearn_idx] if settings.on == "forget" else retain[:len(relearn_idx)]
    probe = {forget: [records[i] for i in probe_idx]}
    if settings.scope == "forget":
        evaluate_model = _Evaluator(tokenizer, probe, {forget: "forget"}, fmt, config)
    else:
        evaluate_model = _Evaluator(tokenizer, dict(sets, **probe), roles, fmt, config)
    first = min(settings.steps)
    runs: dict[str, dict] = {}
    for label in _ordered(paths):
        model = load(paths[label])
        curve = relearn_curve(model, tokenizer, train, list(settings.steps), settings.lr, settings.batch_size,
                              settings.seed, lambda k, m=model, lb=label: evaluate_model(
                                  m, unattacked_oracle=lb == "oracle" and k == first), fmt)
        runs[label] = {str(k): aggregates for k, aggregates in curve.items()}
        del model
    return {"attack": "relearn", "steps": sorted(set(settings.steps)), "lr": settings.lr,
            "batch_size": settings.batch_size, "relearn_on": settings.on, "seed": settings.seed, "scope": settings.scope,
            "split": {"set": forget, "relearn": relearn_idx, "probe": probe_idx}, "runs": runs,
            "recovery": _recovery(runs, str(first))}


def plot_relearn_recovery(report: dict, path: Path, metric: str = "forget_rouge_l") -> Path | None:
    """Recovery share of ``metric`` against relearning steps, one line per unlearned model; None when
    no share exists (target and oracle do not differ on it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ...io_utils import atomic_write_bytes

    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    plotted = 0
    for label, by_step in report.get("recovery", {}).items():
        steps = sorted(int(k) for k in by_step)
        values = [by_step[str(k)].get(metric, {}).get("recovery") for k in steps]
        if any(v is not None for v in values):
            ax.plot(steps, [float("nan") if v is None else v for v in values], marker="o", label=label)
            plotted += 1
    if not plotted:
        return None
    ax.axhline(0, color="gray", linewidth=0.8)
    ax.axhline(1, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xlabel("relearning steps")
    ax.set_ylabel(f"recovered share ({metric})")
    ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, buffer.getvalue())
