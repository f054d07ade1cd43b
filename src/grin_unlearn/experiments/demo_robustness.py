"""The demo's robustness section: both attacks (:mod:`grin_unlearn.evaluation.attacks`) on its methods.

4-bit RTN (groups of 32) and relearning on half of each forget author's questions (0, 3 and 9 steps,
lr 1e-3, 4 records a step: the first try of issue #24), each on the target, the oracle and every demo
method, so each method's recovery share is measured against the same attacks on the two references.
One seed: a hint, not a result (docs/robustness.md).
"""

from __future__ import annotations

from pathlib import Path

from ..data.formatting import PromptFormat
from ..evaluation import EvalConfig
from ..evaluation.attacks import QuantizeConfig
from ..evaluation.attacks.study import RelearnSettings, plot_relearn_recovery, quantization_study, relearn_study
from ..io_utils import atomic_write_json
from ..models import load_model, load_tokenizer

QUANTIZATION = QuantizeConfig(bits=4, group_size=32)
RELEARN = RelearnSettings(steps=(0, 3, 9), lr=1e-3, batch_size=4)
SHOWN = (("forget_keyword_accuracy", "keyword acc"), ("forget_rouge_l", "ROUGE-L"))


def robustness_section(out_dir: Path, paths: dict[str, Path], sets: dict, roles: dict,
                       relearn_settings: RelearnSettings = RELEARN) -> list[str]:
    """Runs both attacks, writes ``attack_quantize.json``, ``attack_relearn.json`` and ``relearn.png``
    under ``out_dir``, and returns the report's lines: each method's recovery share per attack. Every
    attacked model is evaluated with the ``fast`` protocol (32 new tokens), as ``grin-unlearn attack``
    does by default."""
    tokenizer = load_tokenizer(str(paths["target"]))
    fmt = PromptFormat.load(paths["target"]) or PromptFormat()
    args = (lambda p: load_model(str(p), dtype="float32"), tokenizer, sets, roles, fmt,
            EvalConfig.for_protocol("fast", mia=False))
    quant = quantization_study(paths, *args, [QUANTIZATION])
    relearn = relearn_study(paths, *args, relearn_settings)
    atomic_write_json(out_dir / "attack_quantize.json", quant)
    atomic_write_json(out_dir / "attack_relearn.json", relearn)
    plot = plot_relearn_recovery(relearn, out_dir / "relearn.png")
    steps = [str(k) for k in relearn_settings.steps if k]
    header = ["method"] + [f"{name}: {setting}" for _, name in SHOWN
                           for setting in ["4-bit", *(f"{k} steps" for k in steps)]]
    lines = ["## Does it stay forgotten?", "",
             f"Share of the forgotten knowledge an attack brings back, `(m_attacked − m_oracle_attacked) / "
             f"(m_target − m_oracle)` (0: no more than the oracle after the same attack; 1: the target's level): "
             f"{QUANTIZATION.label}, and relearning on half of each forget author's questions (lr {relearn_settings.lr}, "
             f"{relearn_settings.batch_size} a step) with the other half probed; the `fast` evaluation protocol. One seed: "
             "a hint (`attack_*.json`, docs/robustness.md).", "",
             "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for label in quant["recovery"]:
        cells = []
        for metric, _ in SHOWN:
            cells.append(_share(quant["recovery"][label][QUANTIZATION.label].get(metric)))
            cells += [_share(relearn["recovery"][label][k].get(metric)) for k in steps]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if plot is not None:
        lines += ["", f"![recovery under relearning]({plot.name})"]
    return lines + [""]


def _share(row: dict | None) -> str:
    value = (row or {}).get("recovery")
    return "–" if value is None else f"{value:.2f}"
