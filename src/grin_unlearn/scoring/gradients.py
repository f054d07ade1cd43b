"""Full-set gradients of the forget and retain losses (the input of GRIN step 1).

GRIN (Anjarlekar & Pombra, "LLM Unlearning using Gradient Ratio-Based Influence Estimation and Noise
Injection", arXiv 2508.06467) needs the full-set gradients of the forget and retain losses,
``G_f = ∇θ L_f`` and ``G_r = ∇θ L_r``. Here ``L`` of a batch is its mean token NLL over answer tokens,
``-(Σ answer log-probs) / (number of answer tokens)``, and ``G = Σ_batches ∇θ L_batch``: per-batch
gradients are summed SIGNED, so contributions of opposite sign cancel, and a scorer takes the absolute
value only at the end. Accumulators are fp32 whatever the model's dtype (bf16 sums of many batches
lose most of their digits).

Only the eligible parameters get ``requires_grad`` during a pass, so autograd never computes the
gradients of embeddings, lm_head or norms unless they are eligible. Each gradient is folded into its
accumulator by a post-accumulate-grad hook and freed at once, so the extra memory is the fp32
accumulators (optionally on the CPU, ``accumulator_device="cpu"``) plus one parameter's gradient at a
time, not a second full set of ``.grad`` tensors.

Distributed: when ``torch.distributed`` is initialised, the examples are cut into batches exactly as in
one process (``examples[i : i + batch_size]``), process ``rank`` takes the batches ``rank, rank + W,
rank + 2W, ...`` (``W`` = world size), and :func:`~grin_unlearn.parallel.distributed.reduce_across_processes` sums the accumulators over
processes before any scorer sees them. Every per-batch mean is therefore over the same examples as in a
single process, and the all-reduced ``G`` is the single-process sum up to the order of the fp32
additions (bit-identical when each process holds at most one batch and ``W <= 2``).

Sharded (FSDP2, the parameters are ``DTensor``s; :mod:`grin_unlearn.parallel.sharding`): every process must run
every forward/backward together, so the batches go in rounds: in round ``j`` process ``r`` runs batch
``j·W + r`` (the same cut as above), and a process with no batch left in the last round runs a batch
with its loss multiplied by 0 (an exactly-zero gradient). FSDP2's reduce-scatter is switched to a plain
sum (:func:`~grin_unlearn.parallel.sharding.summed_gradients`), so after round ``j`` each process's sharded
``.grad`` is its rows of ``Σ_r ∇θ L_{jW+r}``, and the hook folds exactly that into the accumulator, a
``DTensor`` holding only this process's rows. Hence ``G = Σ_j Σ_r ∇θ L_{jW+r} = Σ_batches ∇θ L_batch``:
each batch's mean is over the same examples as in one process, and the sum over batches is the same sum
grouped by rounds (bit-identical with one round and ``W <= 2``; otherwise equal up to fp32 addition
order). No process ever holds a full-size gradient or accumulator: FSDP2 frees each block's unsharded
gradient after its reduce-scatter. For bf16 weights, each round's sum (reduced in fp32) is rounded once
to bf16 in the sharded ``.grad``, as one process rounds each batch's gradient.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.formatting import PadCollator, PromptFormat, encode_training_records
from ..parallel.distributed import rank_and_world_size, reduce_across_processes
from ..errors import UserInputError
from ..logprobs import logits_from_first_answer, sequence_logprobs
from ..models import model_device, pad_token_id
from ..progress import show_progress
from ..parallel.sharding import (all_reduce_max, all_reduce_sum, any_selected, is_sharded, local, summed_gradients,
                                 zeros_like_shard)

logger = logging.getLogger(__name__)

Grads = dict[str, torch.Tensor]



def subsample(items: list, max_samples: int | None, seed: int) -> list:
    """At most ``max_samples`` items, drawn without replacement by a CPU generator seeded with ``seed``.

    Kept in their original order; all items when ``max_samples`` is None or >= ``len(items)``.
    """
    if max_samples is None:
        return list(items)
    if isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Integral) or max_samples <= 0:
        raise UserInputError(f"retain_samples: expected a positive integer or None, got {max_samples!r}")
    if max_samples >= len(items):
        return list(items)
    generator = torch.Generator().manual_seed(int(seed))
    keep = torch.randperm(len(items), generator=generator)[: int(max_samples)].sort().values
    return [items[i] for i in keep.tolist()]


def accumulate_gradients(
    model, tokenizer, records: list[dict], fmt: PromptFormat | None, params: dict[str, torch.nn.Parameter],
    batch_size: int = 8, max_samples: int | None = None, seed: int = 0, desc: str = "",
    accumulator_device: str | torch.device | None = None, squares_out: Grads | None = None,
) -> Grads:
    """``G = Σ_batches ∇θ L_batch`` over question/answer ``records`` (see the module docstring).

    ``squares_out``, when given (an empty dict), is filled with ``S = Σ_batches (∇θ L_batch)²``, the
    batch-level diagonal empirical Fisher of the loss (:func:`accumulate_example_gradients`).

    Raw-text records (``text``, no ``question``) are cut into ``fmt.max_length``-token chunks scored
    on every token (:func:`~grin_unlearn.data.formatting.encode_text`), so ``L`` of a batch of text is
    its mean token NLL over the chunks' tokens. ``records`` are encoded with ``fmt`` (default
    :class:`PromptFormat`) after subsampling
    ``max_samples`` of them with ``seed`` (``--retain-samples``). ``desc`` names the set in the
    progress bar and in errors. Returns one fp32 tensor per entry of ``params``.
    """
    name = desc or "records"
    if not records:
        raise UserInputError(f"{name}: expected at least one record, got none")
    chosen = subsample(records, max_samples, seed)
    examples = encode_training_records(tokenizer, chosen, fmt or PromptFormat())
    truncated = sum(e["truncated"] for e in examples)
    if truncated:
        logger.warning("%s: %d of %d examples were truncated to max_length", name, truncated, len(examples))
    return accumulate_example_gradients(model, examples, params, PadCollator(pad_token_id(tokenizer)),
                                        batch_size=batch_size, desc=desc, accumulator_device=accumulator_device,
                                        squares_out=squares_out)


def accumulate_example_gradients(
    model, examples: list[dict], params: dict[str, torch.nn.Parameter],
    collator: Callable[[list[dict]], dict[str, torch.Tensor]], batch_size: int = 8,
    max_samples: int | None = None, seed: int = 0, desc: str = "",
    accumulator_device: str | torch.device | None = None, squares_out: Grads | None = None,
) -> Grads:
    """:func:`accumulate_gradients` on pre-encoded examples (``input_ids``/``labels`` lists).

    ``squares_out``, when given, is filled with ``S = Σ_batches (∇θ L_batch)²`` (fp32, one tensor per
    parameter, summed over processes like ``G``): each batch's gradient squared elementwise as the hook
    folds it in, so it costs one more accumulator and no pass. Under FSDP2 a process sees each round's
    sum of ``W`` batch gradients, so ``S`` there sums the squares of those round sums (the same diagonal at
    a coarser batch level).

    ``collator`` turns a list of examples into ``input_ids``, ``labels`` (IGNORE_INDEX on unscored
    tokens) and ``attention_mask`` tensors. The model runs in eval mode (no dropout); its train/eval
    mode, every parameter's ``requires_grad`` and any existing ``.grad`` are restored afterwards.
    """
    name = desc or "examples"
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size <= 0:
        raise UserInputError(f"batch_size: expected a positive integer, got {batch_size!r}")
    if not params:
        raise UserInputError(f"{name}: expected at least one parameter to accumulate gradients for")
    examples = subsample(examples, max_samples, seed)
    if not examples:
        raise UserInputError(f"{name}: expected at least one example, got none")
    rank, world_size = rank_and_world_size()
    # Shard whole batches, not examples: each batch mean is then over the same examples as in one process.
    batches = [examples[start : start + batch_size] for start in range(0, len(examples), batch_size)]
    sharded = any(is_sharded(p) for p in params.values())
    if sharded:
        check_accumulator_device(params, accumulator_device)
        rounds = -(-len(batches) // world_size)  # every process runs every round (FSDP2's collectives)
        shard = [batches[j * world_size + rank] if j * world_size + rank < len(batches) else None for j in range(rounds)]
    else:
        shard = batches[rank::world_size]  # may be empty when there are fewer batches than processes
    device = model_device(model)
    accumulators = {key: zeros_like_shard(p, torch.float32, accumulator_device) for key, p in params.items()}
    if squares_out is not None:
        squares_out.update({key: zeros_like_shard(p, torch.float32, accumulator_device) for key, p in params.items()})
    quiet = not show_progress(rank)
    with _gradient_pass(model, params, accumulators, squares_out), \
            (summed_gradients(model) if sharded else nullcontext()):
        for chunk in tqdm(shard, desc=f"{name} gradients", unit="batch", disable=quiet):
            batch = {k: v.to(device) for k, v in collator(chunk or batches[0]).items()}
            loss = batch_loss(model, batch)
            (loss if chunk is not None else loss * 0.0).backward()  # x·0: an exactly-zero gradient
    if sharded:
        return accumulators
    if squares_out is not None:
        reduce_across_processes(squares_out)
    return reduce_across_processes(accumulators)


def check_accumulator_device(params: dict[str, torch.Tensor], accumulator_device) -> None:
    """Sharded accumulators live on the parameters' device (they are already 1/W of the full size)."""
    if accumulator_device is None or not any(is_sharded(p) for p in params.values()):
        return
    param_device = next(iter(params.values())).device
    if torch.device(accumulator_device).type != param_device.type:
        raise UserInputError(f"accumulator_device: {accumulator_device!r} is not supported under FSDP2 (the parameters "
                             f"are on {param_device.type}); FSDP2 already shards the accumulators over the processes, "
                             "so leave it unset")


def batch_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token NLL of the batch over answer tokens: ``-Σ log π(y_t|x, y_<t) / Σ |y|`` (0 if none); the
    LM head only from the column before the first answer token on (the same loss and gradients)."""
    column, keep = logits_from_first_answer(model, [batch["labels"]], batch["input_ids"].shape[1])
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False, **keep).logits
    logp = sequence_logprobs(logits, batch["labels"][:, column:])  # (B,) sums and counts
    return -logp.sum.sum() / logp.count.sum().clamp(min=1)


@contextmanager
def _gradient_pass(model, params: dict[str, torch.nn.Parameter], accumulators: Grads,
                   squares: Grads | None = None) -> Iterator[None]:
    """Eval mode, gradients for ``params`` only, each folded into its accumulator (and its square into
    ``squares``) by a hook."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    saved_grads = {key: p.grad for key, p in params.items()}
    handles = []
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        for key, p in params.items():
            p.grad = None
            p.requires_grad_(True)
            square = squares[key] if squares is not None else None
            handles.append(p.register_post_accumulate_grad_hook(_fold_into(accumulators[key], square)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
        for key, p in params.items():
            p.grad = saved_grads[key]
        model.train(was_training)


def _fold_into(accumulator: torch.Tensor, squares: torch.Tensor | None = None) -> Callable[[torch.Tensor], None]:
    def hook(param: torch.Tensor) -> None:
        with torch.no_grad():
            # In-place add upcasts a bf16/fp16 gradient into the fp32 accumulator without an fp32 copy.
            # Under FSDP2 both are DTensors placed alike: add this process's rows only.
            grad = local(param.grad).to(accumulator.device)
            local(accumulator).add_(grad)
            if squares is not None:
                wide = grad.float()  # square in fp32: a bf16 square of a small gradient underflows
                local(squares).addcmul_(wide, wide)
        param.grad = None  # free it now: peak memory is one gradient, not a full .grad set

    return hook


def selected_gradient_stats(grads: Grads, masks: dict[str, torch.Tensor]) -> dict:
    """Size of a gradient over the selected weights: ``{"l2", "mean_abs", "max_abs", "weights"}``.

    ``l2 = sqrt(Σ_{i∈S} G[i]²)``, ``mean_abs = Σ_{i∈S} |G[i]| / |S|``, ``max_abs = max_{i∈S} |G[i]|`` over
    the entries ``S`` selected by ``masks`` (tensors of ``grads`` without a mask count as unselected),
    accumulated in fp64. ``weights`` is ``|S|``; every statistic is 0 when nothing is selected.
    Under FSDP2 each process holds rows of ``G`` and of the masks: the sums, counts and maxima are
    all-reduced over the processes, so every process returns the whole model's statistics.
    """
    sum_sq, sum_abs, max_abs, count = 0.0, 0.0, 0.0, 0
    sharded = any(is_sharded(g) for g in grads.values())
    for name, grad in grads.items():
        mask = masks.get(name)
        if mask is None:
            continue
        grad, mask = local(grad), local(mask)
        values = grad[mask.to(grad.device)].double().abs()  # (|S ∩ tensor|,)
        if values.numel():
            sum_sq += float(values.square().sum())
            sum_abs += float(values.sum())
            max_abs = max(max_abs, float(values.max()))
            count += values.numel()
    if sharded:
        sum_sq, sum_abs, count = (float(v) for v in all_reduce_sum(np.array([sum_sq, sum_abs, count], dtype=np.float64)))
        count = int(count)
        max_abs = float(all_reduce_max(max_abs))
    return {"l2": math.sqrt(sum_sq), "mean_abs": sum_abs / count if count else 0.0, "max_abs": max_abs,
            "weights": count}


def selected_forget_gradient(model, tokenizer, forget: list[dict], fmt: PromptFormat, params: dict, masks: dict,
                             batch_size: int, accumulator_device=None) -> dict:
    """Norms of the forget gradient ``G_f`` over the selected weights of the model as it is now.

    ``G_f = Σ_batches ∇θ L_batch`` exactly as for scoring (:func:`accumulate_gradients`, batches of
    ``batch_size``), on the tensors holding a selected weight; the statistics are over the selected
    entries only (:func:`selected_gradient_stats`).
    """
    chosen = {name: params[name] for name, mask in masks.items() if any_selected(mask)}
    grads = accumulate_gradients(model, tokenizer, forget, fmt, chosen, batch_size=batch_size,
                                 desc="forget (gradient norm)", accumulator_device=accumulator_device)
    return selected_gradient_stats(grads, {name: masks[name] for name in chosen})
