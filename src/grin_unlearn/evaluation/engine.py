"""The two model passes of an evaluation: teacher forcing and greedy generation.

Teacher forcing (:func:`score_examples`; the TOFU protocol uses :mod:`.shared_prefix`, the same
scores with every shared start run once) keeps, per labelled token, its log-probability and the model's
argmax. Every teacher-forced metric (probability, truth ratio, Min-K%, LOSS, zlib, extraction strength,
exact memorization) is computed from these, so no answer is run twice; Min-K%++ also reads the moments
of the next-token distribution, computed in the same pass for the examples that need them. The
GradNorm attack's backward passes (:mod:`.gradient_norms`) run only when asked.

Generation (:func:`generate_texts`) is greedy, prompts sorted by length and left-padded; our own loop
(:func:`greedy_decode`: a preallocated KV cache, rows leave the batch as they end) picks ``generate``'s
tokens without its per-step machinery. The text is post-processed as open-unlearning does
(``evals/metrics/utils.py::eval_text_similarity``): decoded with ``skip_special_tokens=True,
clean_up_tokenization_spaces=True``, cut at the first EOS text and each stop string, stripped.
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..data.formatting import PadCollator, left_pad_prompts
from ..logprobs import IGNORE_INDEX, logits_from_first_answer, logits_keep_keyword
from ..models import model_device, pad_token_id, text_config
from .kv_cache import PreallocatedCache


@dataclass(frozen=True)
class AnswerScore:
    """Teacher-forced scores of one sequence's labelled tokens (EOS included when labelled)."""

    token_logps: list[float]  # log π(y_t | x, y_<t) per labelled token
    argmax: list[int]  # the model's argmax prediction at each labelled position
    labels: list[int]  # the labelled tokens y_t
    # Moments of log π(v | ·) over the vocabulary at each labelled position (Min-K%++), when asked:
    vocab_mean: list[float] | None = None  # μ_t = Σ_v π(v|·) log π(v|·)
    vocab_var: list[float] | None = None  # σ_t² = Σ_v π(v|·) (log π(v|·) − μ_t)²

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def sum_logp(self) -> float:
        return math.fsum(self.token_logps)

    @property
    def avg_loss(self) -> float:
        """Mean token NLL ``-(1/|y|) Σ_t log π(y_t|·)`` (the reference's ``avg_loss``); inf without tokens."""
        return -self.sum_logp / self.count if self.count else math.inf

    @property
    def probability(self) -> float:
        """``exp(-avg_loss) = P(y|x)^(1/|y|)``."""
        return math.exp(-self.avg_loss)


@contextmanager
def eval_mode(model):
    """Eval mode and no autograd for the block; the model's previous mode is restored after. Under
    autocast (``--precision bf16``) autocast's cast of each weight is kept for the block (the weights
    cannot change inside it; otherwise every forward and decoding step casts all of them again) and
    dropped on leaving; autocast caches only outside ``inference_mode``, hence ``no_grad`` there."""
    was_training, device_type = model.training, model_device(model).type
    model.eval()
    try:
        if not torch.is_autocast_enabled(device_type):
            with torch.inference_mode():
                yield
            return
        try:
            with torch.no_grad(), torch.autocast(device_type, torch.get_autocast_dtype(device_type), cache_enabled=True):
                yield
        finally:
            torch.clear_autocast_cache()
    finally:
        model.train(was_training)


def first_label(labels: list[int]) -> int:
    """Position of the first labelled token (the length when none is)."""
    return next((t for t, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))


def vocab_moments(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(μ, σ²)`` of ``log π(v)`` under ``π = softmax(logits)`` per row of ``logits`` (N, V), in fp32.

    ``σ² = Σ_v π(v) (log π(v) − μ)²``, centred: the textbook ``E[(log π)²] − μ²`` cancels in fp32 when the
    distribution is flat (both terms near 40 for a 512-token vocabulary, their difference near 0.01)."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
    prob = logp.exp()
    mean = (prob * logp).sum(dim=-1)  # (N,)
    return mean, (prob * (logp - mean.unsqueeze(-1)).square()).sum(dim=-1)


def score_examples(model, examples: list[dict], pad: int, batch_size: int,
                   with_moments: set[int] | frozenset[int] = frozenset()) -> list[AnswerScore]:
    """Scores of encoded examples (``input_ids``/``labels``), longest first so batches pad little; the
    examples whose index is in ``with_moments`` also get :func:`vocab_moments` per labelled token."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    collate, device = PadCollator(pad), model_device(model)
    scores: list[AnswerScore | None] = [None] * len(examples)
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in rows]).items()}
            # Logits only from the position before the first labelled token of the batch on (the prompt's
            # lm_head rows are never used): positions offset..T-1, labels aligned to them.
            offset, extra = logits_from_first_answer(model, [batch["labels"]], batch["input_ids"].shape[1])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False, **extra).logits  # (B, T - offset, V)
            for i, score in zip(rows, answer_scores(logits, batch["labels"][:, offset:], [i in with_moments for i in rows])):
                scores[i] = score
    return scores


def answer_scores(logits: torch.Tensor, labels: torch.Tensor, moments: list[bool]) -> list[AnswerScore]:
    """One :class:`AnswerScore` per row of a teacher-forced batch: ``logits`` (B, T, V) and ``labels``
    (B, T) aligned (logits at ``t`` predict ``labels[t + 1]``); rows with ``moments[b]`` get
    :func:`vocab_moments` too."""
    mask = labels[:, 1:] != IGNORE_INDEX  # (B, T - 1)
    rows = logits[:, :-1][mask].float()  # (N, V): labelled positions only, cast once (argmax is slow in bf16)
    labels = labels[:, 1:][mask]  # (N,)
    # log softmax(z)[y] = z_y - logsumexp(z), as token_logprobs; it can round to +1e-8, hence the clamp.
    picked = (rows.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - rows.logsumexp(dim=-1)).clamp(max=0.0).cpu()
    argmax, labels = rows.argmax(dim=-1).cpu(), labels.cpu()  # (N,)
    counts = mask.sum(dim=-1).tolist()
    means = variances = [None] * len(counts)
    if any(moments):  # only the rows that asked: the moments read the whole vocabulary
        wanted = torch.cat([part for part, m in zip(rows.split(counts), moments) if m])
        mean, var = (iter(t.cpu().split([c for c, m in zip(counts, moments) if m])) for t in vocab_moments(wanted))
        means, variances = zip(*[(next(mean), next(var)) if m else (None, None) for m in moments])
    return [AnswerScore(token_logps=lp.tolist(), argmax=am.tolist(), labels=lb.tolist(),
                        vocab_mean=mu.tolist() if mu is not None else None,
                        vocab_var=v.tolist() if v is not None else None)
            for lp, am, lb, mu, v in zip(picked.split(counts), argmax.split(counts), labels.split(counts), means, variances)]


def _hits_stop(tokenizer, new_tokens: list[int], stops, lookback: int) -> bool:
    """True once the decoded last ``lookback`` new tokens of a row hold a stop string (the look-back of
    the reference's ``MultiTokenEOSCriteria``: wide enough for a stop string split across tokens)."""
    text = tokenizer.decode(new_tokens[-lookback:])
    return any(s in text for s in stops)


class _StopStrings:
    """Per-sequence stopping criterion for ``generate``: True once a row's new tokens hold a stop string."""

    def __init__(self, tokenizer, stops, prompt_width: int):
        self.tokenizer, self.stops, self.start = tokenizer, stops, prompt_width
        self.lookback = _stop_lookback(tokenizer, stops)
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row, tokens in enumerate(input_ids[:, self.start:].tolist()):
            if not self.done[row] and _hits_stop(self.tokenizer, tokens, self.stops, self.lookback):
                self.done[row] = True
        return self.done.clone()


def _stop_lookback(tokenizer, stops) -> int:
    return max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stops) + 2


def cut_generation(text: str, stops: list[str]) -> str:
    """The reference's post-processing: cut at the first occurrence of each stop in turn, strip."""
    for stop in stops:
        if stop and stop in text:
            text = text.split(stop)[0]
    return text.strip()


def generation_eos_ids(model, tokenizer) -> list[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    return [configured] if isinstance(configured, int) else list(configured or [])


# Decoder families whose forward takes a DynamicCache, position ids and a 2-D padding mask on every
# transformers version we support: these decode with :func:`greedy_decode`, the rest with ``generate``.
LOOP_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
# generation_config fields that change greedy tokens (logits processors): any non-default -> ``generate``.
_PROCESSOR_DEFAULTS = {"repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0),
                       "bad_words_ids": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
                       "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "min_length": (None, 0),
                       "min_new_tokens": (None, 0), "sequence_bias": (None,), "encoder_repetition_penalty": (None, 1.0),
                       "exponential_decay_length_penalty": (None,), "renormalize_logits": (None, False)}


def uses_greedy_loop(model) -> bool:
    """Whether :func:`greedy_decode` reproduces ``generate``'s greedy tokens for ``model``: a decoder
    family of :data:`LOOP_MODEL_TYPES` whose generation config sets no logits processor."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in LOOP_MODEL_TYPES or getattr(config, "is_encoder_decoder", False):
        return False
    generation = getattr(model, "generation_config", None)
    return all(getattr(generation, field, None) in allowed for field, allowed in _PROCESSOR_DEFAULTS.items())


def forward_arguments(model, cache, keep: int) -> dict:
    """The cache and logits-to-keep keywords under this transformers version's names (``cache`` /
    ``logits_to_keep`` in 5.x, ``past_key_values`` / ``num_logits_to_keep`` in 4.45)."""
    out = {"cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values": cache}
    keep_name = logits_keep_keyword(model)
    return {**out, keep_name: keep} if keep_name else out


def greedy_decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
                  eos_ids: list[int], stop=None) -> list[list[int]]:
    """Greedy new tokens of each left-padded row, as ``generate(do_sample=False)`` picks them.

    Each step feeds the last token with a :class:`~.kv_cache.PreallocatedCache`, position ids from the
    padding mask (``cumsum(mask) - 1``, as ``generate``) and logits of the last position only, and takes
    ``argmax`` of the fp32 logits. A row leaves the batch (its cache rows with it) as soon as it emits
    an EOS id or ``stop(new_tokens)`` is true, so finished rows cost nothing more; ``generate`` runs
    every row until the last one ends. A row's tokens end with the EOS that stopped it.
    """
    cache = PreallocatedCache(capacity=input_ids.shape[1] + max_new_tokens)
    extra = forward_arguments(model, cache, keep=1)
    position_ids = attention_mask.long().cumsum(-1) - 1  # (B, P)
    position_ids.masked_fill_(attention_mask == 0, 1)
    rows = list(range(input_ids.shape[0]))  # the original row of each row still decoding
    new_tokens: list[list[int]] = [[] for _ in rows]
    eos = torch.tensor(eos_ids, device=input_ids.device) if eos_ids else None
    ids = input_ids
    for step in range(max_new_tokens):
        logits = model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                       **extra).logits[:, -1]  # (b, V)
        next_tokens = logits.float().argmax(dim=-1)  # (b,)
        done = torch.isin(next_tokens, eos) if eos is not None else torch.zeros_like(next_tokens, dtype=torch.bool)
        for row, token in zip(rows, next_tokens.tolist()):
            new_tokens[row].append(token)
        if stop is not None:
            done |= torch.tensor([stop(new_tokens[row]) for row in rows], device=done.device)
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        if bool(done.any()):
            active = (~done).nonzero().squeeze(1)  # (b',)
            cache.batch_select_indices(active)
            rows = [rows[i] for i in active.tolist()]
            next_tokens, attention_mask, position_ids = next_tokens[active], attention_mask[active], position_ids[active]
        ids = next_tokens.unsqueeze(1)  # (b, 1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(attention_mask.shape[0], 1)], dim=1)
        position_ids = position_ids[:, -1:] + 1
    return new_tokens


def decode_generation(tokenizer, new_tokens: list[int], stop_strings=()) -> str:
    """New tokens as the reference post-processes them: decoded with ``skip_special_tokens`` and
    ``clean_up_tokenization_spaces``, cut at the EOS text and each stop string, stripped."""
    eos = tokenizer.eos_token_id
    stops = ([tokenizer.decode([eos])] if eos is not None else []) + list(stop_strings)
    text = tokenizer.decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=True)
    return cut_generation(text, stops)


def generate_texts(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
                   stop_strings: list[str] | tuple[str, ...] = (), static_cache: bool = True,
                   use_loop: bool | None = None) -> list[str]:
    """Greedy continuations of token-id ``prompts``, post-processed as the reference does."""
    return [decode_generation(tokenizer, tokens, stop_strings) for tokens in generate_token_ids(
        model, tokenizer, prompts, max_new_tokens, batch_size, stop_strings, static_cache, use_loop)]


def generate_token_ids(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
                       stop_strings: list[str] | tuple[str, ...] = (), static_cache: bool = True,
                       use_loop: bool | None = None) -> list[list[int]]:
    """Greedy new tokens of token-id ``prompts`` (a row may end with EOS or padding after it).

    Decoding is :func:`greedy_decode` where :func:`uses_greedy_loop` says it gives ``generate``'s
    tokens (``use_loop`` overrides), else ``generate`` with a static KV cache (``static_cache=False``:
    its default dynamic cache, as the reference runs it).
    """
    from transformers import StoppingCriteriaList

    eos = tokenizer.eos_token_id
    pad = eos if eos is not None else pad_token_id(tokenizer)
    loop = uses_greedy_loop(model) if use_loop is None else use_loop
    lookback = _stop_lookback(tokenizer, stop_strings) if stop_strings else 0
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    device, tokens = model_device(model), [[] for _ in prompts]
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            inputs = {k: v.to(device) for k, v in left_pad_prompts([prompts[i] for i in rows], pad).items()}
            width = inputs["input_ids"].shape[1]
            if loop:
                stop = (lambda tokens: _hits_stop(tokenizer, tokens, stop_strings, lookback)) if stop_strings else None
                new = greedy_decode(model, inputs["input_ids"], inputs["attention_mask"], max_new_tokens,
                                    generation_eos_ids(model, tokenizer), stop)
            else:
                criteria = StoppingCriteriaList([_StopStrings(tokenizer, stop_strings, width)]) if stop_strings else None
                # A static (pre-allocated) KV cache: the default dynamic one concatenates at every step.
                output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                        top_p=None, top_k=None, temperature=None, use_cache=True, pad_token_id=pad,
                                        eos_token_id=generation_eos_ids(model, tokenizer) or None,
                                        cache_implementation="static" if static_cache else None,
                                        stopping_criteria=criteria)  # (B, width + new)
                new = output[:, width:].tolist()
            for i, row in zip(rows, new):
                tokens[i] = list(row)
    if hasattr(model, "_previous_max_cache_length"):  # generate's static-cache size memo: leave no trace
        del model._previous_max_cache_length
    return tokens


def kv_bytes_per_row(model, positions: int) -> int:
    """Bytes of one sequence's KV cache over ``positions`` tokens: ``2·layers·kv_heads·head_dim·positions``
    values of the weights' dtype (0 when the config does not say)."""
    config = text_config(model)
    layers, heads = getattr(config, "num_hidden_layers", 0), getattr(config, "num_attention_heads", 0)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or (getattr(config, "hidden_size", 0) // max(heads, 1))
    return 2 * layers * kv_heads * head_dim * positions * next(model.parameters()).element_size()


def generate_with_config(model, tokenizer, prompts: list[list[int]], config) -> list[str]:
    """:func:`generate_texts` with an :class:`~.config.EvalConfig`'s length, stop strings and decoding batch."""
    longest = max((len(p) for p in prompts), default=0)
    batch = config.decoding_batch(model_device(model), kv_bytes_per_row(model, longest + config.max_new_tokens))
    return generate_texts(model, tokenizer, prompts, config.max_new_tokens, batch, config.stop_strings)


def generate_answers(model, tokenizer, questions: list[str], fmt, config) -> list[str]:
    """Greedy answers to ``questions`` in prompt format ``fmt`` with ``config``'s generation settings."""
    return generate_with_config(model, tokenizer, fmt.prompts_ids(tokenizer, list(questions)), config)
