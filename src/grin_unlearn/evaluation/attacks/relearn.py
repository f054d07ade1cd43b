"""Relearning attack: a few fine-tuning steps on part of the forget set, then the rest is probed.

Hu et al., "Jogging the Memory of Unlearned LLMs Through Targeted Relearning Attacks" (arXiv
2406.13356) and Lynch et al., "Eight Methods to Evaluate Robust Unlearning in LLMs" (arXiv 2402.16835):
knowledge that was only hidden comes back after a few steps of fine-tuning on a small related set. Each
forget entity's records are split in two (:func:`split_relearn_probe`): the model is fine-tuned on the
*relearn* half and evaluated on the *probe* half, whose answers it never trains on. The same attack on
the oracle (which never saw the forget set) measures what a model reaches by generalising from the
relearn half alone; above that level, the knowledge was still in the weights.

The fine-tuning is plain: mean answer-token NLL, AdamW at a constant learning rate, no weight decay,
batches drawn without replacement from a seeded shuffle (reshuffled each pass), so the curve at
``k1 < k2`` steps is one run evaluated twice. With ``lr = 0`` every weight stays bit-identical.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from ...data.formatting import PadCollator, PromptFormat, encode_records
from ...errors import UserInputError
from ...models import model_device, pad_token_id


def entity_of(record: dict, index: int) -> str:
    """The group a record belongs to (``author``, else ``entity``, else the record itself)."""
    return str(record.get("author") or record.get("entity") or f"record {index}")


def split_relearn_probe(records: list[dict], seed: int) -> tuple[list[int], list[int]]:
    """Indices of the relearn half and the probe half: each entity's records shuffled with ``seed`` and
    cut at ``n // 2`` (an entity with one record goes to the probe half). Disjoint; together every index."""
    by_entity: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_entity.setdefault(entity_of(record, i), []).append(i)
    rng = random.Random(seed)
    relearn, probe = [], []
    for entity in sorted(by_entity):
        indices = list(by_entity[entity])
        rng.shuffle(indices)
        relearn += sorted(indices[:len(indices) // 2])
        probe += sorted(indices[len(indices) // 2:])
    return sorted(relearn), sorted(probe)


def relearn_curve(model, tokenizer, records: list[dict], checkpoints: list[int], lr: float, batch_size: int,
                  seed: int, evaluate: Callable[[int], dict], fmt: PromptFormat | None = None) -> dict[int, dict]:
    """Fine-tune ``model`` in place on ``records`` and call ``evaluate(k)`` after ``k`` steps for each
    ``k`` in ``checkpoints`` (0 = before any step); returns ``{k: evaluate(k)}``."""
    if not records:
        raise UserInputError("relearn: no records to relearn on (each forget entity needs at least 2 records)")
    if lr < 0 or batch_size <= 0 or any(k < 0 for k in checkpoints):
        raise UserInputError(f"relearn: expected lr >= 0, batch size > 0 and steps >= 0, got {lr}, {batch_size}, "
                             f"{checkpoints}")
    examples = encode_records(tokenizer, records, fmt or PromptFormat())
    collate, device = PadCollator(pad_token_id(tokenizer)), model_device(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    rng, order, done, results = random.Random(seed), [], 0, {}
    for k in sorted(set(checkpoints)):
        model.train()
        while done < k:
            if not order:
                order = list(range(len(examples)))
                rng.shuffle(order)
            rows, order = order[:batch_size], order[batch_size:]
            batch = {name: value.to(device) for name, value in collate([examples[i] for i in rows]).items()}
            optimizer.zero_grad(set_to_none=True)
            # A caller's torch.autocast keeps its weight casts until it exits: drop those of the last step.
            torch.clear_autocast_cache()
            model(**batch).loss.backward()
            optimizer.step()
            done += 1
        model.eval()
        results[k] = evaluate(k)
    return results
