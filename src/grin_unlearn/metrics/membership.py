"""Membership-inference attack scores, their ROC AUC, and MUSE's PrivLeak.

Every per-item score here is NLL-like: **higher score = the text looks less familiar = more likely a
non-member**. Input ``token_logps`` is, per item, the natural-log probabilities of the scored tokens
(each <= 0), e.g. ``log p(x_t | x_<t)`` for t = 2..T. On TOFU (reference: open-unlearning
``src/evals/metrics/mia/``) LOSS and zlib use every labelled answer token (EOS included), Min-K all
but the last.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

from scipy.stats import mannwhitneyu

from grin_unlearn.errors import UserInputError
from grin_unlearn.metrics.result import MetricResult, as_floats, as_list, check_same_length, mean

__all__ = ["loss_score", "mia_auc", "min_k_percent_score", "privleak", "zlib_score"]


def _items(token_logps: Sequence[Sequence[float]], allow_empty: bool = False) -> list[list[float]]:
    items = as_list("token_logps", token_logps)
    out = []
    for i, item in enumerate(items):
        if allow_empty and len(item) == 0:
            out.append([])
            continue
        logps = as_floats(f"token_logps[{i}]", item, allow_inf=True)
        for t, x in enumerate(logps):
            if x > 1e-6 or x == math.inf:
                raise UserInputError(
                    f"`token_logps`[{i}][{t}] is a log-probability and must be <= 0, got {x}"
                )
        out.append(logps)
    return out


def _mean_nll(logps: list[float]) -> float:
    return -math.fsum(logps) / len(logps)


def loss_score(token_logps: Sequence[Sequence[float]]) -> MetricResult:
    """LOSS attack (Yeom et al. 2018, arXiv 1709.01604): per item the mean token NLL
    ``-(1/T) sum_t log p(x_t|x_<t)``; aggregate = mean over items.
    """
    per_item = [_mean_nll(x) for x in _items(token_logps)]
    return MetricResult(name="mia_loss", value=mean(per_item), per_item=per_item)


def zlib_score(token_logps: Sequence[Sequence[float]], texts: Sequence[str]) -> MetricResult:
    """zlib attack (Carlini et al. 2021, "Extracting Training Data from Large Language Models",
    arXiv 2012.07805, Sec. 6.1): per item the log-perplexity over the zlib entropy,
    ``(-(1/T) sum_t log p(x_t|x_<t)) / len(zlib.compress(text.encode("utf-8")))`` (bytes, default
    level). Aggregate = mean over items.

    The numerator is the mean token NLL (= log-perplexity), as in the paper ("the ratio of the (log)
    perplexity ... and the zlib entropy") and in MUSE; not the summed NLL.
    """
    items = _items(token_logps)
    strings = as_list("texts", texts)
    check_same_length("token_logps", items, "texts", strings)
    per_item = []
    for i, (logps, text) in enumerate(zip(items, strings)):
        if not isinstance(text, str):
            raise UserInputError(f"`texts`[{i}] must be a string, got {type(text).__name__}")
        per_item.append(_mean_nll(logps) / len(zlib.compress(text.encode("utf-8"))))
    return MetricResult(name="mia_zlib", value=mean(per_item), per_item=per_item)


def min_k_percent_score(token_logps: Sequence[Sequence[float]], k: float = 0.4,
                        exclude_last: bool = True) -> MetricResult:
    """Min-K% Prob attack (Shi et al. 2023, "Detecting Pretraining Data from Large Language Models",
    arXiv 2310.16789): per item ``-(1/|S|) sum_{t in S} log p(x_t|x_<t)`` where ``S`` holds the
    ``|S| = max(1, floor(k*T))`` tokens with the lowest log-probability; aggregate = mean.

    As in the reference implementation (open-unlearning ``mia/min_k.py`` over ``tokenwise_logprobs``,
    TOFU config ``k: 0.4``): with ``exclude_last`` the last labelled token (the appended EOS) is not
    among the ``T`` tokens, and an item with no token left scores 0.
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0.0 < k <= 1.0:
        raise UserInputError(f"`k` must be a fraction in (0, 1], got {k!r}")
    per_item = []
    for logps in _items(token_logps, allow_empty=True):
        logps = logps[:-1] if exclude_last else logps
        lowest = sorted(logps)[: max(1, int(k * len(logps)))]
        per_item.append(-mean(lowest) if lowest else 0.0)
    return MetricResult(name="mia_min_k", value=mean(per_item), per_item=per_item)


def mia_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> MetricResult:
    """ROC AUC of a membership attack whose score is higher for non-members (all scores above).

    ``AUC = P(s_nonmember > s_member) + 0.5 * P(s_nonmember == s_member)`` over all pairs, i.e. the
    Mann-Whitney ``U`` of the non-member sample divided by ``n_member * n_nonmember`` (ties count
    half). 1.0 = the attack separates members perfectly (the model remembers them), 0.5 = chance.
    Set-level: ``per_item`` is empty.
    """
    members = as_floats("member_scores", member_scores, allow_inf=True)
    nonmembers = as_floats("nonmember_scores", nonmember_scores, allow_inf=True)
    u = mannwhitneyu(nonmembers, members, alternative="two-sided").statistic  # U of the first sample
    return MetricResult(name="mia_auc", value=float(u) / (len(members) * len(nonmembers)), per_item=[])


def privleak(auc_model: float, auc_oracle: float) -> MetricResult:
    """PrivLeak (MUSE; Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language
    Models", arXiv 2407.06460) as the reference implementation computes it (open-unlearning
    ``privacy.py::privleak``): ``((1 - AUC_model) - (1 - AUC_oracle)) / ((1 - AUC_oracle) + 1e-10) * 100``.

    Inputs are :func:`mia_auc` values (non-members scoring higher = 1) for the evaluated model and the
    retain-only oracle; ``1 - AUC`` is MUSE's orientation. Near 0 is ideal; strongly negative =
    under-unlearning (the model still remembers the forget set, e.g. -100 for a perfect attack on
    the model against a chance-level oracle); positive = over-unlearning. The reference uses
    ``AUC_oracle = 0.5`` when it has no retain model's logs.
    """
    values = as_floats("auc_model/auc_oracle", [auc_model, auc_oracle])
    for arg, v in zip(("auc_model", "auc_oracle"), values):
        if not 0.0 <= v <= 1.0:
            raise UserInputError(f"`{arg}` must be an AUC in [0, 1], got {v}")
    muse_model, muse_oracle = 1.0 - values[0], 1.0 - values[1]
    value = (muse_model - muse_oracle) / (muse_oracle + 1e-10) * 100.0
    return MetricResult(name="privleak", value=value, per_item=[])
