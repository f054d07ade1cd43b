"""How much of the forgotten knowledge an attack brings back: one number per metric.

For a forget metric ``m`` (higher = more knowledge: keyword accuracy, ROUGE-L, probability, …), the
attacked unlearned model, the attacked oracle and the target and oracle before the attack:

    recovery = (m_attacked − m_oracle_attacked) / (m_target − m_oracle)

0: the attacked model knows no more than an attacked model that never saw the data; 1: as much as
the target knew before unlearning (it can exceed 1). None when the target and the oracle do not
differ on that metric (nothing was there to forget). Issue #24 of this project defines it so.
"""

from __future__ import annotations

RECOVERY_METRICS = ("forget_keyword_accuracy", "forget_rouge_l", "forget_probability", "forget_truth_ratio",
                    "forget_quality", "mcq_accuracy")


def recovery(attacked: float | None, oracle_attacked: float | None, target: float | None,
             oracle: float | None) -> float | None:
    """``(attacked − oracle_attacked) / (target − oracle)``; None if an input is missing or the gap is 0."""
    if None in (attacked, oracle_attacked, target, oracle) or target == oracle:
        return None
    return (attacked - oracle_attacked) / (target - oracle)


def recovery_table(attacked: dict, oracle_attacked: dict, target: dict, oracle: dict,
                   metrics: tuple[str, ...] = RECOVERY_METRICS) -> dict[str, dict]:
    """Per metric present in the four ``eval.json`` aggregates: the raw values and the recovery share."""
    table = {}
    for metric in metrics:
        values = [d.get(metric) for d in (attacked, oracle_attacked, target, oracle)]
        if all(v is None for v in values):
            continue
        table[metric] = {"attacked": values[0], "oracle_attacked": values[1], "target": values[2],
                         "oracle": values[3], "recovery": recovery(*values)}
    return table
