"""Reference-model membership attack: the loss calibrated by a reference model's (Carlini et al. 2021,
"Extracting Training Data from Large Language Models", arXiv 2012.07805, Sec. 6.1, as a ratio of
perplexities; the reference implementation takes the difference of the losses, as here).

A text that is unlikely for everybody scores a high LOSS whether or not the model saw it; subtracting
a reference model's loss on the same text removes that difficulty. Per item,
``score = L_model(x) − L_reference(x)`` with ``L`` the mean token NLL over the labelled tokens (EOS
included), the LOSS attack's score (:func:`~grin_unlearn.metrics.membership.loss_score`), as the
reference implementation computes it (open-unlearning ``src/evals/metrics/mia/reference.py``, the
``avg_loss`` of both models). On TOFU the reference model is the retain-only model (its config's
``reference_model_path``: e.g. ``tofu_…_retain90``), the oracle here, whose per-item LOSS scores its own
``eval.json`` already holds. Higher score = less familiar than to the reference = more likely a
non-member, as every score of :mod:`grin_unlearn.metrics.membership`.
"""

from __future__ import annotations

from collections.abc import Sequence

from grin_unlearn.metrics.result import MetricResult, as_floats, check_same_length, mean

__all__ = ["reference_score"]


def reference_score(model_losses: Sequence[float], reference_losses: Sequence[float]) -> MetricResult:
    """Per item ``model_losses[i] − reference_losses[i]`` (mean token NLLs of the same texts)."""
    model = as_floats("model_losses", model_losses, allow_inf=True)
    reference = as_floats("reference_losses", reference_losses, allow_inf=True)
    check_same_length("model_losses", model, "reference_losses", reference)
    per_item = [m - r for m, r in zip(model, reference)]
    return MetricResult(name="mia_reference", value=mean(per_item), per_item=per_item)
