"""Min-K%++ membership attack (Zhang et al. 2024, "Min-K%++: Improved Baseline for Detecting
Pre-Training Data from Large Language Models", arXiv 2404.02936).

Min-K% ranks a text by its least likely tokens; Min-K%++ first standardises each token's
log-probability by the model's whole next-token distribution at that position, so a token that is
unlikely only because the distribution is flat counts less:

``z_t = (log π(x_t|x_<t) − μ_t) / σ_t``, with ``μ_t = E_{v~π(·|x_<t)}[log π(v|x_<t)]`` (minus the
entropy) and ``σ_t² = E_v[(log π(v|x_<t))²] − μ_t²``;

the item's score is ``−(1/|S|) Σ_{t∈S} z_t`` over the ``|S| = max(1, ⌊k·T⌋)`` lowest ``z_t``. As in
the reference implementation (open-unlearning ``src/evals/metrics/mia/min_k_plus_plus.py``, TOFU
config ``k: 0.4``): the last labelled token (the appended EOS) is not among the ``T`` tokens, ``σ_t²``
is clamped at 1e-6, and an item with no token left scores 0. Higher score = less familiar = more
likely a non-member, as every score of :mod:`grin_unlearn.metrics.membership`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_floats, as_list, mean

__all__ = ["min_k_plus_plus_score"]

VARIANCE_FLOOR = 1e-6  # the reference's clamp of σ_t²


def min_k_plus_plus_score(token_logps: Sequence[Sequence[float]], vocab_means: Sequence[Sequence[float]],
                          vocab_variances: Sequence[Sequence[float]], k: float = 0.4,
                          exclude_last: bool = True) -> MetricResult:
    """Per item ``−mean`` of the lowest ``max(1, ⌊k·T⌋)`` standardised log-probabilities ``z_t``
    (module docstring); ``vocab_means`` / ``vocab_variances`` hold ``μ_t`` / ``σ_t²`` per token."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 < k <= 1.0:
        raise UserInputError(f"`k` must be a fraction in (0, 1], got {k!r}")
    items, means, variances = (as_list(name, values) for name, values in (
        ("token_logps", token_logps), ("vocab_means", vocab_means), ("vocab_variances", vocab_variances)))
    if not len(items) == len(means) == len(variances):
        raise UserInputError(f"token_logps, vocab_means and vocab_variances: expected one entry per item, got "
                             f"{len(items)}, {len(means)} and {len(variances)}")
    per_item = []
    for i, (logps, mu, var) in enumerate(zip(items, means, variances)):
        logps, mu, var = (as_floats(f"{name}[{i}]", v, allow_inf=True) if len(v) else []
                          for name, v in (("token_logps", logps), ("vocab_means", mu), ("vocab_variances", var)))
        if not len(logps) == len(mu) == len(var):
            raise UserInputError(f"item {i}: expected μ and σ² for each of its {len(logps)} tokens, "
                                 f"got {len(mu)} and {len(var)}")
        if exclude_last:
            logps, mu, var = logps[:-1], mu[:-1], var[:-1]
        z = sorted((x - m) / math.sqrt(max(v, VARIANCE_FLOOR)) for x, m, v in zip(logps, mu, var))
        lowest = z[: max(1, int(k * len(z)))]
        per_item.append(-mean(lowest) if lowest else 0.0)
    return MetricResult(name="mia_min_k_plus_plus", value=mean(per_item), per_item=per_item)
