"""Full-set gradients and per-weight influence scores (GRIN step 1, and the baseline scorers).

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
rank + 2W, ...`` (``W`` = world size), and :func:`reduce_across_processes` sums the accumulators over
processes before any scorer sees them. Every per-batch mean is therefore over the same examples as in a
single process, and the all-reduced ``G`` is the single-process sum up to the order of the fp32
additions (bit-identical when each process holds at most one batch and ``W <= 2``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .data.formatting import PadCollator, PromptFormat, encode_training_records
from .errors import UserInputError
from .logprobs import sequence_logprobs
from .selection import eligible_parameters

logger = logging.getLogger(__name__)

Grads = dict[str, torch.Tensor]

# Absolute eps of the GRIN ratio. Measured |G_r| of the built-in model (random init, retain90 of a
# 20-author world, batch 8): 0.1% quantile 7e-6, 1% quantile 8e-5, median 1e-2, no exact zero. So
# 1e-8 changes |G_f| / |G_r| by < 0.2% for 99.9% of weights and only keeps the ratio finite where the
# retain set does not move a weight at all (|G_r| == 0). A larger eps pulls the ranking towards the
# `forget-grad` scorer. Trained and larger models have smaller per-weight gradients: check the low
# quantiles of InfluenceResult.retain_grads and lower eps if they approach 1e-8.
DEFAULT_EPS = 1e-8
# WAGLE's mu: the diagonal-Hessian constant (1/mu acts as a step size on the retain gradient). 1e-6 is
# the `mu` of the TOFU configs in public WAGLE code; there G_r / mu dominates theta, so the score is
# close to |G_r ⊙ G_f| / mu.
DEFAULT_WAGLE_MU = 1e-6
QUIET_ENV = "GRIN_UNLEARN_QUIET"


# --- gradient accumulation -----------------------------------------------------------------------


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


def reduce_across_processes(grads: Grads) -> Grads:
    """Sum every accumulator over all processes (in place) when ``torch.distributed`` is initialised.

    The seam for multi-process influence: each process accumulates its shard, this makes every process
    hold the full-set sum ``G = Σ_processes G_rank`` before any ``abs`` or ratio. A no-op otherwise.
    NCCL cannot reduce CPU tensors, so CPU accumulators go through the current CUDA device one at a time.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return grads
    via_cuda = dist.get_backend() == "nccl"
    for tensor in grads.values():
        if via_cuda and tensor.device.type == "cpu":
            staged = tensor.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(staged, op=dist.ReduceOp.SUM)
            tensor.copy_(staged)
        else:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return grads


def accumulate_gradients(
    model, tokenizer, records: list[dict], fmt: PromptFormat | None, params: dict[str, torch.nn.Parameter],
    batch_size: int = 8, max_samples: int | None = None, seed: int = 0, desc: str = "",
    accumulator_device: str | torch.device | None = None,
) -> Grads:
    """``G = Σ_batches ∇θ L_batch`` over question/answer ``records`` (see the module docstring).

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
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return accumulate_example_gradients(model, examples, params, PadCollator(pad_id or 0), batch_size=batch_size,
                                        desc=desc, accumulator_device=accumulator_device)


def accumulate_example_gradients(
    model, examples: list[dict], params: dict[str, torch.nn.Parameter],
    collator: Callable[[list[dict]], dict[str, torch.Tensor]], batch_size: int = 8,
    max_samples: int | None = None, seed: int = 0, desc: str = "",
    accumulator_device: str | torch.device | None = None,
) -> Grads:
    """:func:`accumulate_gradients` on pre-encoded examples (``input_ids``/``labels`` lists).

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
    rank, world_size = _rank_and_world_size()
    # Shard whole batches, not examples: each batch mean is then over the same examples as in one process.
    batches = [examples[start : start + batch_size] for start in range(0, len(examples), batch_size)]
    shard = batches[rank::world_size]  # may be empty when there are fewer batches than processes
    device = _input_device(model)
    accumulators = {
        key: torch.zeros(p.shape, dtype=torch.float32, device=accumulator_device or p.device)
        for key, p in params.items()
    }
    quiet = os.environ.get(QUIET_ENV, "0") == "1" or rank != 0
    with _gradient_pass(model, params, accumulators):
        for chunk in tqdm(shard, desc=f"{name} gradients", unit="batch", disable=quiet):
            batch = {k: v.to(device) for k, v in collator(chunk).items()}
            batch_loss(model, batch).backward()
    return reduce_across_processes(accumulators)


def batch_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token NLL of the batch over answer tokens: ``-Σ log π(y_t|x, y_<t) / Σ |y|`` (0 if none)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    logp = sequence_logprobs(logits, batch["labels"])  # (B,) sums and counts
    return -logp.sum.sum() / logp.count.sum().clamp(min=1)


@contextmanager
def _gradient_pass(model, params: dict[str, torch.nn.Parameter], accumulators: Grads) -> Iterator[None]:
    """Eval mode, gradients for ``params`` only, each folded into its accumulator by a hook."""
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
            handles.append(p.register_post_accumulate_grad_hook(_fold_into(accumulators[key])))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
        for key, p in params.items():
            p.grad = saved_grads[key]
        model.train(was_training)


def _fold_into(accumulator: torch.Tensor) -> Callable[[torch.Tensor], None]:
    def hook(param: torch.Tensor) -> None:
        with torch.no_grad():
            # In-place add upcasts a bf16/fp16 gradient into the fp32 accumulator without an fp32 copy.
            accumulator.add_(param.grad.to(accumulator.device))
        param.grad = None  # free it now: peak memory is one gradient, not a full .grad set

    return hook


def _rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _input_device(model) -> torch.device:
    device = getattr(model, "device", None)
    return torch.device(device) if device is not None else next(model.parameters()).device


# --- scorers -------------------------------------------------------------------------------------


@dataclass
class ScoringContext:
    """What a scorer reads: the eligible ``params``, signed fp32 ``forget_grads`` (``G_f``) and
    ``retain_grads`` (``G_r``) (None unless its spec needs them), GRIN's ``eps``, the ``random``
    scorer's ``seed``, WAGLE's ``wagle_mu``, and the ``device`` for gradient-free scores (default:
    each parameter's device)."""

    params: dict[str, torch.Tensor]
    forget_grads: Grads | None = None
    retain_grads: Grads | None = None
    eps: float = DEFAULT_EPS
    seed: int = 0
    wagle_mu: float = DEFAULT_WAGLE_MU
    device: str | torch.device | None = None

    def forget(self) -> Grads:
        return _required(self.forget_grads, "forget")

    def retain(self) -> Grads:
        return _required(self.retain_grads, "retain")


def _required(grads: Grads | None, which: str) -> Grads:
    if grads is None:  # a programming error in a scorer's registration, not a user input error
        raise RuntimeError(f"this scorer reads {which} gradients: register it with needs_{which}=True")
    return grads


Scorer = Callable[[ScoringContext], Grads]


@dataclass(frozen=True)
class ScorerSpec:
    """A registered scorer and which gradient passes it needs (the pipeline runs only those)."""

    name: str
    fn: Scorer
    needs_forget: bool
    needs_retain: bool

    def __call__(self, ctx: ScoringContext) -> Grads:
        return self.fn(ctx)


SCORERS: dict[str, ScorerSpec] = {}


def register_scorer(name: str, *, needs_forget: bool, needs_retain: bool) -> Callable[[Scorer], Scorer]:
    """Decorator adding a scorer ``(ctx) -> {name: fp32 scores >= 0}`` to :data:`SCORERS`."""

    def decorate(fn: Scorer) -> Scorer:
        if name in SCORERS:
            raise ValueError(f"scorer {name!r} is already registered")
        SCORERS[name] = ScorerSpec(name, fn, needs_forget, needs_retain)
        return fn

    return decorate


def get_scorer(name: str) -> ScorerSpec:
    """The scorer registered as ``name``; :class:`UserInputError` listing the valid names otherwise."""
    if name not in SCORERS:
        raise UserInputError(f"scorer: unknown name {name!r}; expected one of {', '.join(sorted(SCORERS))}")
    return SCORERS[name]


@register_scorer("grin", needs_forget=True, needs_retain=True)
def grin_scores(ctx: ScoringContext) -> Grads:
    """GRIN gradient ratio (arXiv 2508.06467): ``s_i = |G_f[i]| / (|G_r[i]| + eps)``.

    High for weights the forget set pulls on and the retain set does not. ``eps`` defaults to the
    absolute :data:`DEFAULT_EPS` = 1e-8 (see the comment there: negligible against typical fp32
    ``|G_r|`` of mean-NLL gradients, it only guards ``|G_r| == 0``); it is a parameter, not a
    fraction of the gradient scale.
    """
    gf, gr = ctx.forget(), ctx.retain()
    return {key: gf[key].abs().div_(gr[key].abs().add_(ctx.eps)) for key in gf}


@register_scorer("forget-grad", needs_forget=True, needs_retain=False)
def forget_grad_scores(ctx: ScoringContext) -> Grads:
    """Gradient saliency ``s_i = |G_f[i]|`` (SalUn: Fan et al., "SalUn: Empowering Machine Unlearning
    via Gradient-based Weight Saliency in Both Image Classification and Generation", arXiv 2310.12508).

    Departure: SalUn thresholds the saliency per model with a hard threshold; here the pipeline takes
    the global top ``p`` like every other scorer, and ``G_f`` is the gradient of the NLL (SalUn uses the
    forgetting loss, the negative of it; the absolute value is the same).
    """
    return {key: g.abs() for key, g in ctx.forget().items()}


@register_scorer("magnitude", needs_forget=False, needs_retain=False)
def magnitude_scores(ctx: ScoringContext) -> Grads:
    """Weight magnitude ``s_i = |theta_i|`` (the data-free pruning baseline)."""
    return {key: p.detach().abs().float().to(ctx.device or p.device) for key, p in ctx.params.items()}


@register_scorer("random", needs_forget=False, needs_retain=False)
def random_scores(ctx: ScoringContext) -> Grads:
    """``s_i ~ U[0, 1)`` i.i.d.: the random-selection baseline.

    Drawn in fp32 on the CPU from a ``torch.Generator`` seeded with a SHA-256 of ``(seed, name)``, so a
    tensor's scores depend only on the seed and its name (not on the device or the other tensors).
    """
    scores = {}
    for key, p in ctx.params.items():
        digest = hashlib.sha256(f"{ctx.seed}:{key}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
        scores[key] = torch.rand(p.shape, generator=generator, dtype=torch.float32).to(ctx.device or p.device)
    return scores


@register_scorer("wagle", needs_forget=True, needs_retain=True)
def wagle_scores(ctx: ScoringContext) -> Grads:
    """WAGLE weight attribution ``s_i = |(theta_i - G_r[i] / mu) · G_f[i]|`` (Jia et al., "WAGLE:
    Strategic Weight Attribution for Effective and Modular Unlearning in Large Language Models",
    arXiv 2410.17509).

    The paper approximates the retain-loss Hessian by ``mu·I`` (diagonal); ``mu`` is ``wagle_mu``
    (default :data:`DEFAULT_WAGLE_MU`). Same form as the public WAGLE code (which negates the score
    and selects the lowest, i.e. the same weights). ``theta`` is taken in fp32.
    """
    gf, gr = ctx.forget(), ctx.retain()
    scores = {}
    for key, p in ctx.params.items():
        theta = p.detach().to(device=gf[key].device, dtype=torch.float32)
        scores[key] = (theta - gr[key] / ctx.wagle_mu).mul_(gf[key]).abs_()
    return scores


# --- pipeline step -------------------------------------------------------------------------------


@dataclass
class InfluenceResult:
    """Per-weight scores and the gradients they came from.

    Attributes:
        scorer: registry name of the scorer.
        scores: fp32, >= 0, one tensor per eligible parameter (selection order).
        forget_grads: ``G_f`` (signed fp32), None if the scorer did not need it.
        retain_grads: ``G_r`` (signed fp32), None if the scorer did not need it.
        timing: seconds per pass: ``forget``, ``retain`` (only passes that ran) and ``score``.
        examples: number of examples each pass used (``retain`` after ``retain_samples``).
    """

    scorer: str
    scores: Grads
    forget_grads: Grads | None = None
    retain_grads: Grads | None = None
    timing: dict[str, float] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)


def score_influence(
    model, tokenizer, forget_records: list[dict], retain_records: list[dict], scorer: str = "grin",
    fmt: PromptFormat | None = None, include: list[str] | None = None, exclude: list[str] | None = None,
    eps: float = DEFAULT_EPS, retain_samples: int | None = None, batch_size: int = 8, seed: int = 0,
    wagle_mu: float = DEFAULT_WAGLE_MU, accumulator_device: str | torch.device | None = None,
) -> InfluenceResult:
    """Score every eligible weight of ``model`` with the registered ``scorer`` (GRIN step 1).

    Runs only the gradient passes the scorer needs: ``G_f`` over all ``forget_records``, ``G_r`` over
    ``retain_samples`` of the ``retain_records`` (all when None; subsampled with ``seed``). The
    eligible weights are :func:`grin_unlearn.selection.eligible_parameters` with ``include``/``exclude``.
    Scorer ``none`` (full fine-tuning) is not a scorer: the pipeline skips this step for it.
    """
    spec = get_scorer(scorer)
    _check_positive("eps", eps)
    _check_positive("wagle_mu", wagle_mu)
    params = eligible_parameters(model, include, exclude)
    fmt = fmt or PromptFormat()
    timing: dict[str, float] = {}
    examples: dict[str, int] = {}
    grads: dict[str, Grads | None] = {"forget": None, "retain": None}
    subsample([], retain_samples, seed)  # validates retain_samples before any pass runs
    passes = [("forget", forget_records, None, spec.needs_forget),
              ("retain", retain_records, retain_samples, spec.needs_retain)]
    for which, records, max_samples, needed in passes:
        if not needed:
            continue
        start = time.perf_counter()
        grads[which] = accumulate_gradients(model, tokenizer, records, fmt, params, batch_size=batch_size,
                                            max_samples=max_samples, seed=seed, desc=f"{which} set",
                                            accumulator_device=accumulator_device)
        timing[which] = time.perf_counter() - start
        examples[which] = len(records) if max_samples is None else min(len(records), max_samples)
    start = time.perf_counter()
    ctx = ScoringContext(params, grads["forget"], grads["retain"], eps=eps, seed=seed, wagle_mu=wagle_mu,
                         device=accumulator_device)
    with torch.no_grad():
        scores = spec(ctx)
    timing["score"] = time.perf_counter() - start
    return InfluenceResult(scorer, scores, grads["forget"], grads["retain"], timing, examples)


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise UserInputError(f"{name}: expected a positive finite number, got {value!r}")
