"""Answer-token log-probabilities: the one helper every module uses to score answers.

Labels follow the Hugging Face convention: ``labels`` has the same shape as ``input_ids`` and holds
:data:`IGNORE_INDEX` on prompt and padding tokens, so only answer tokens are scored. A causal LM's
logits at position ``t`` predict the token at ``t + 1``, hence every function here shifts by one:
``logits[:, :-1]`` is scored against ``labels[:, 1:]``.

Log-softmax is computed in fp32 whatever the model's dtype (bf16 log-probs summed over an answer
lose several digits), but only on answer positions: the (N, V) fp32 copy covers the N answer tokens,
not every prompt and padding token of the batch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclass(frozen=True)
class SequenceLogProbs:
    """Per-example log-probability of an answer under a model.

    Attributes:
        sum: (B,) fp32, ``log π(y|x) = Σ_t log π(y_t | x, y_<t)`` over answer tokens.
        count: (B,) int64, number of answer tokens ``|y|``.
    """

    sum: torch.Tensor
    count: torch.Tensor

    @property
    def mean(self) -> torch.Tensor:
        """(B,) mean token log-prob ``log π(y|x) / |y|`` (0 for an example with no answer token)."""
        return self.sum / self.count.clamp(min=1)


def _shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes; return the shifted logits (B, T-1, V) and labels (B, T-1)."""
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape (B, T, V), got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels must have shape (B, T) = {tuple(logits.shape[:2])}, got {tuple(labels.shape)}"
        )
    return logits[:, :-1], labels[:, 1:]


def token_logprobs(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each label token: ``log π(y_t | x, y_<t)``.

    Args:
        logits: (B, T, V) model outputs, any float dtype.
        labels: (B, T) token ids, :data:`IGNORE_INDEX` on tokens that are not scored.

    Returns:
        ``(logp, mask)``: logp (B, T-1) fp32, the label's log-prob and 0 where ignored;
        mask (B, T-1) bool, True on scored (answer) tokens.
    """
    shift_logits, shift_labels = _shift(logits, labels)  # (B, T-1, V), (B, T-1)
    mask = shift_labels != IGNORE_INDEX  # (B, T-1)
    rows = shift_logits[mask].float()  # (N, V), answer positions only
    targets = shift_labels[mask]  # (N,)
    # log softmax(z)[y] = z_y - logsumexp(z): avoids materialising a second (N, V) tensor.
    picked = rows.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - rows.logsumexp(dim=-1)  # (N,)
    logp = picked.new_zeros(mask.shape).masked_scatter(mask, picked)  # (B, T-1)
    return logp, mask


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> SequenceLogProbs:
    """Summed answer log-prob ``log π(y|x)`` and answer length ``|y|`` per example.

    Args:
        logits: (B, T, V) model outputs.
        labels: (B, T) token ids, :data:`IGNORE_INDEX` on prompt and padding.
    """
    logp, mask = token_logprobs(logits, labels)  # (B, T-1)
    return SequenceLogProbs(sum=logp.sum(dim=-1), count=mask.sum(dim=-1))


def answer_kl(
    logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean over answer tokens of ``KL(π_ref || π_θ)`` per example.

    ``KL_t = Σ_v π_ref(v | x, y_<t) · (log π_ref(v | x, y_<t) − log π_θ(v | x, y_<t))``,
    averaged over the answer positions of each example: the retain KL term of the TOFU baselines
    (Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121), with the
    reference model as the first argument as in open-unlearning. Departure: those average over all
    tokens of the batch; this averages per example so the result is (B,) like every other term.

    Args:
        logits: (B, T, V) current model outputs (gradients flow through these).
        ref_logits: (B, T, V) frozen reference model outputs on the same inputs.
        labels: (B, T) token ids, :data:`IGNORE_INDEX` on prompt and padding.

    Returns:
        (B,) fp32, 0 for an example with no answer token.
    """
    if ref_logits.shape != logits.shape:
        raise ValueError(
            f"ref_logits must have the shape of logits {tuple(logits.shape)}, "
            f"got {tuple(ref_logits.shape)}"
        )
    shift_logits, shift_labels = _shift(logits, labels)  # (B, T-1, V), (B, T-1)
    mask = shift_labels != IGNORE_INDEX  # (B, T-1)
    logp = F.log_softmax(shift_logits[mask].float(), dim=-1)  # (N, V)
    ref_logp = F.log_softmax(ref_logits[:, :-1][mask].float(), dim=-1)  # (N, V)
    # kl_div(input, target) = Σ exp(target) · (target − input) = KL(target || input).
    kl = F.kl_div(logp, ref_logp, reduction="none", log_target=True).sum(dim=-1)  # (N,)
    per_token = kl.new_zeros(mask.shape).masked_scatter(mask, kl)  # (B, T-1)
    return per_token.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)


def logits_keep_keyword(model) -> str | None:
    """The forward keyword that limits the LM head to the last columns: ``logits_to_keep`` in
    transformers ≥ 4.50, ``num_logits_to_keep`` before, None for a model with neither (a
    DistributedDataParallel wrapper is read through its ``.module``)."""
    parameters = inspect.signature(getattr(model, "module", model).forward).parameters
    return next((name for name in ("logits_to_keep", "num_logits_to_keep") if name in parameters), None)


def logits_from_first_answer(model, labels: list[torch.Tensor], width: int) -> tuple[int, dict]:
    """``(column, keywords)``: the first column whose logits a loss over ``labels`` reads (the one before
    the earliest labelled token of any row), and the forward keywords that make the model compute only
    columns ``column..width-1`` of the LM head, skipping the prompt's rows (and their gradient), which no
    answer-token loss reads. ``logits_to_keep`` in transformers ≥ 4.50, ``num_logits_to_keep`` before;
    ``(0, {})`` for a model with neither. A DistributedDataParallel wrapper passes the keyword on to its
    ``.module``."""
    name = logits_keep_keyword(model)
    if name is None:
        return 0, {}
    first = []
    for batch in labels:
        scored = batch != IGNORE_INDEX  # (B, T)
        first.append(int(torch.where(scored.any(1), scored.float().argmax(1), batch.shape[1]).min()))
    column = max(min(first) - 1, 0)
    return column, ({name: width - column} if column else {})
