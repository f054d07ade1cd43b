"""Teacher forcing with each question's prompt run once.

A TOFU set scores up to five sequences per question (answer, paraphrased answer, three perturbed
answers) that begin with the same prompt; on a chat model the prompt (system message, question, the
assistant header) is about two thirds of each sequence. :func:`score_with_shared_prefixes` runs a
group's shared prefix once, keeps its keys and values, repeats that cache row once per member and runs
only each member's remaining tokens on top of it. Attention over ``prefix + suffix`` with the prefix's
cached keys and values is the same computation as over the whole sequence, so every score equals
:func:`~.engine.score_examples`' up to fp32 summation order (matrix products of other shapes):
``bench/bench_reference.py --model-set smollm2`` and ``tests/test_shared_prefix.py`` bound it.

Grouping: examples with the same ``prompt_ids`` form a group; its shared prefix is the first
``S = min_m min(LCP(input_ids_m, prompt_ids), first_label_m − 1)`` tokens, so the position that
predicts each member's first labelled token stays in the member's own suffix (where its logits are
computed). A group whose ``S`` is 0 (nothing shared) is scored whole, as a group of suffixes over an
empty prefix.

Batches: groups sorted by prefix length, ``batch_size`` groups per prefix pass (the tokens all of the
chunk's prefixes begin with run once, the rest right-padded after them); their members, sorted by suffix length, in batches of
``batch_size`` rows, each over a copy of its group's cache row: suffixes right-padded after the prefix
with positions ``S + t``, the 2-D attention mask covering both parts.
"""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache

from ..logprobs import IGNORE_INDEX, logits_from_first_answer
from ..models import model_device
from .engine import AnswerScore, answer_scores, eval_mode, first_label, forward_arguments


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefix_groups(examples: list[dict]) -> list[tuple[int, list[int]]]:
    """``(S, member indices)`` per group of examples sharing ``prompt_ids``; ``S`` as the module says."""
    members: dict[tuple[int, ...], list[int]] = {}
    for i, example in enumerate(examples):
        members.setdefault(tuple(example.get("prompt_ids") or ()), []).append(i)
    groups = []
    for prompt, indices in members.items():
        shared = min(min(_common_prefix(examples[i]["input_ids"], list(prompt)),
                         first_label(examples[i]["labels"]) - 1) for i in indices)
        groups.append((max(shared, 0), indices))
    return groups


def _chunks(groups: list[tuple[int, list[int]]], batch_size: int):
    """Groups in order of prefix length (longest first), ``batch_size`` groups per prefix pass (a
    group of more than ``batch_size`` members is split into several)."""
    pieces = [(shared, indices[i:i + batch_size]) for shared, indices in sorted(groups, key=lambda g: -g[0])
              for i in range(0, len(indices), batch_size)]
    for start in range(0, len(pieces), batch_size):
        yield pieces[start:start + batch_size]


def _prefix_pass(model, examples: list[dict], chunk: list[tuple[int, list[int]]], pad: int):
    """The chunk's prefixes run once: ``(cache, prefix mask (G, W))``; a group with ``S = 0`` is a fully
    masked row. ``(None, (G, 0) mask)`` when no group shares anything.

    The tokens every prefix of the chunk begins with (a chat template's system message and user header)
    run once as a single row, their cache row is repeated per group, and each group's remaining prefix
    tokens run on top of it, right-padded, at positions ``C + t``."""
    device = model_device(model)
    if max(s for s, _ in chunk) == 0:
        return None, torch.zeros(len(chunk), 0, dtype=torch.long, device=device)
    prefixes = [examples[part[0]]["input_ids"][:s] for s, part in chunk]
    shared = [p for p in prefixes if p]
    # At least one token of each prefix stays in the second pass, so that pass has a column to run.
    common = min(min(_common_prefix(shared[0], p) for p in shared), min(map(len, shared)) - 1) if len(shared) > 1 else 0
    cache = DynamicCache()
    if common:
        model(input_ids=torch.tensor([shared[0][:common]], device=device),
              position_ids=torch.arange(common, device=device).unsqueeze(0), use_cache=True,
              **forward_arguments(model, cache, keep=1))
        cache.batch_repeat_interleave(len(chunk))
    width = max(len(p) for p in prefixes) - common
    input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
    mask = torch.zeros((len(chunk), common + width), dtype=torch.long)
    for g, prefix in enumerate(prefixes):
        if prefix:
            input_ids[g, :len(prefix) - common] = torch.tensor(prefix[common:])
        mask[g, :len(prefix) or 1] = 1  # a group with nothing shared attends to one pad, masked out after
    mask = mask.to(device)
    positions = (common + torch.arange(width, device=device)).unsqueeze(0).expand(len(chunk), -1)
    model(input_ids=input_ids.to(device), attention_mask=mask, position_ids=positions, use_cache=True,
          **forward_arguments(model, cache, keep=1))
    mask[torch.tensor([not prefix for prefix in prefixes], device=device)] = 0
    return cache, mask


def _suffix_pass(model, examples: list[dict], rows: list[tuple[int, int, int]], cache, prefix_mask: torch.Tensor,
                 pad: int, with_moments) -> list[AnswerScore]:
    """Scores of ``rows`` = ``(example, S, group row in the chunk)``: each example's tokens after its
    prefix, right-padded, at positions ``S + t``, over a copy of its group's cache row."""
    device = model_device(model)
    group_rows = torch.tensor([g for _, _, g in rows], device=device)
    if cache is not None:
        cache = copy.deepcopy(cache)
        cache.batch_select_indices(group_rows)  # one cache row per member
    suffixes = [examples[i]["input_ids"][s:] for i, s, _ in rows]
    length = max(len(t) for t in suffixes)
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    suffix_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for r, ((i, s, _), tokens) in enumerate(zip(rows, suffixes)):
        input_ids[r, :len(tokens)] = torch.tensor(tokens)
        labels[r, :len(tokens)] = torch.tensor(examples[i]["labels"][s:])
        suffix_mask[r, :len(tokens)] = 1
    positions = torch.tensor([s for _, s, _ in rows]).unsqueeze(1) + torch.arange(length).unsqueeze(0)  # (B, U)
    # Logits from the position before the batch's first labelled token on, labels aligned to them.
    offset, _ = logits_from_first_answer(model, [labels], length)  # 0 for a model without the keyword
    extra = forward_arguments(model, cache if cache is not None else DynamicCache(), keep=length - offset)
    mask = torch.cat([prefix_mask[group_rows], suffix_mask.to(device)], dim=1)
    logits = model(input_ids=input_ids.to(device), attention_mask=mask, position_ids=positions.to(device),
                   use_cache=True, **extra).logits  # (B, U - offset, V)
    return answer_scores(logits, labels[:, offset:].to(device), [i in with_moments for i, _, _ in rows])


def score_with_shared_prefixes(model, examples: list[dict], pad: int, batch_size: int,
                               with_moments: set[int] | frozenset[int] = frozenset()) -> list[AnswerScore]:
    """:func:`~.engine.score_examples`' scores, each group's shared prompt prefix run once (module doc)."""
    scores: list[AnswerScore | None] = [None] * len(examples)
    with eval_mode(model):
        for chunk in _chunks(prefix_groups(examples), batch_size):
            cache, prefix_mask = _prefix_pass(model, examples, chunk, pad)
            # Members sorted by suffix length, so each suffix batch pads little.
            rows = sorted(((i, s, g) for g, (s, part) in enumerate(chunk) for i in part),
                          key=lambda row: -(len(examples[row[0]]["input_ids"]) - row[1]))
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                for (i, _, _), score in zip(batch, _suffix_pass(model, examples, batch, cache, prefix_mask, pad,
                                                                with_moments)):
                    scores[i] = score
    return scores
