"""Reference-model log-probs for NPO / IdkDPO, precomputed once when the forget set is small.

The reference π_ref is the frozen starting model (NPO, arXiv 2404.05868). Its answer log-probs on the
forget (and refusal) examples never change during unlearning, so they are computed in one pass before
training and looked up by example index: no second model in memory and no second forward per step.
"""

from __future__ import annotations

import torch

from ..logprobs import SequenceLogProbs, sequence_logprobs


@torch.no_grad()
def precompute_reference(ref_model, dataset, collator, groups: tuple[str, ...], batch_size: int = 32
                         ) -> dict[str, SequenceLogProbs]:
    """``{group: SequenceLogProbs over the whole dataset, in index order}`` for each group."""
    was_training = ref_model.training
    ref_model.eval()
    device = next(ref_model.parameters()).device
    sums = {g: torch.zeros(len(dataset)) for g in groups}
    counts = {g: torch.zeros(len(dataset), dtype=torch.long) for g in groups}
    for start in range(0, len(dataset), batch_size):
        batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        for group in groups:
            inputs = {k: v.to(device) for k, v in batch[group].items()}
            logits = ref_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            stats = sequence_logprobs(logits, inputs["labels"])
            sums[group][batch["index"]] = stats.sum.float().cpu()
            counts[group][batch["index"]] = stats.count.cpu()
    ref_model.train(was_training)
    return {g: SequenceLogProbs(sum=sums[g], count=counts[g]) for g in groups}


def lookup(table: SequenceLogProbs, index: torch.Tensor, device) -> SequenceLogProbs:
    return SequenceLogProbs(sum=table.sum[index.cpu()].to(device), count=table.count[index.cpu()].to(device))
