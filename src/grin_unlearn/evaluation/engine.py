"""The two model passes of an evaluation: teacher forcing and greedy generation.

Teacher forcing (:func:`score_examples`) runs each encoded sequence once — sequences sorted by length
and batched with right padding — and keeps, per labelled token, its log-probability and the model's
argmax. Every teacher-forced metric (probability, truth ratio, Min-K%, LOSS, zlib, extraction strength,
exact memorization) is computed from these, so no answer is run twice.

Generation (:func:`generate_texts`) is greedy, prompts sorted by length and left-padded, with a static
KV cache; a batch stops as soon as every sequence has emitted EOS or holds a stop string. The text is post-processed as the
reference implementation does (open-unlearning ``evals/metrics/utils.py::eval_text_similarity``): the
new tokens are decoded with ``skip_special_tokens=True, clean_up_tokenization_spaces=True``, cut at
the first occurrence of the EOS text and of each stop string, and stripped.
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..data.formatting import PadCollator, left_pad_prompts
from ..logprobs import IGNORE_INDEX, token_logprobs
from ..models import model_device, pad_token_id


@dataclass(frozen=True)
class AnswerScore:
    """Teacher-forced scores of one sequence's labelled tokens (EOS included when labelled)."""

    token_logps: list[float]  # log π(y_t | x, y_<t) per labelled token
    argmax: list[int]  # the model's argmax prediction at each labelled position
    labels: list[int]  # the labelled tokens y_t

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
    """Eval mode and no autograd for the block; the model's previous mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _first_label(labels: list[int]) -> int:
    return next((t for t, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))


def score_examples(model, examples: list[dict], pad: int, batch_size: int) -> list[AnswerScore]:
    """Scores of encoded examples (``input_ids``/``labels``), longest first so batches pad little."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    collate, device = PadCollator(pad), model_device(model)
    keep = "logits_to_keep" in inspect.signature(model.forward).parameters
    scores: list[AnswerScore | None] = [None] * len(examples)
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in rows]).items()}
            # Logits only from the position before the first labelled token of the batch on (the prompt's
            # lm_head rows are never used): positions offset..T-1, labels aligned to them.
            offset = max(0, min(_first_label(examples[i]["labels"]) for i in rows) - 1) if keep else 0
            extra = {"logits_to_keep": batch["input_ids"].shape[1] - offset} if keep else {}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False, **extra).logits  # (B, T - offset, V)
            labels = batch["labels"][:, offset:]  # (B, T - offset)
            logp, mask = token_logprobs(logits, labels)  # (B, T - offset - 1)
            argmax = logits[:, :-1][mask].argmax(dim=-1).cpu()  # (N,) labelled positions only
            picked = logp[mask].clamp(max=0.0).cpu()  # (N,); z_y - logsumexp(z) can round to +1e-8
            labels = labels[:, 1:][mask].cpu()  # (N,)
            counts = mask.sum(dim=-1).tolist()
            for i, lp, am, lb in zip(rows, picked.split(counts), argmax.split(counts), labels.split(counts)):
                scores[i] = AnswerScore(token_logps=lp.tolist(), argmax=am.tolist(), labels=lb.tolist())
    return scores


class _StopStrings:
    """Per-sequence stopping criterion: True once the decoded new tokens of a row hold a stop string.

    Only the last ``len(tokens of s) + 2`` new tokens are decoded at each step (the look-back of the
    reference's ``MultiTokenEOSCriteria``, wide enough for a stop string split across tokens).
    """

    def __init__(self, tokenizer, stops, prompt_width: int):
        self.tokenizer, self.stops, self.start = tokenizer, stops, prompt_width
        self.lookback = max(len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in stops) + 2
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        window = self.tokenizer.batch_decode(input_ids[:, self.start:][:, -self.lookback:])
        for row, text in enumerate(window):
            if not self.done[row] and any(s in text for s in self.stops):
                self.done[row] = True
        return self.done.clone()


def cut_generation(text: str, stops: list[str]) -> str:
    """The reference's post-processing: cut at the first occurrence of each stop in turn, strip."""
    for stop in stops:
        if stop and stop in text:
            text = text.split(stop)[0]
    return text.strip()


def _eos_ids(model, tokenizer) -> list[int]:
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    return [configured] if isinstance(configured, int) else list(configured or [])


def generate_texts(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int,
                   stop_strings: list[str] | tuple[str, ...] = (), static_cache: bool = True) -> list[str]:
    """Greedy continuations of token-id ``prompts``, post-processed as the reference does
    (``static_cache=False``: generate's default dynamic cache, as the reference runs it)."""
    from transformers import StoppingCriteriaList

    eos = tokenizer.eos_token_id
    stops = ([tokenizer.decode([eos])] if eos is not None else []) + list(stop_strings)
    pad = eos if eos is not None else pad_token_id(tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    device, texts = model_device(model), [""] * len(prompts)
    with eval_mode(model):
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            inputs = {k: v.to(device) for k, v in left_pad_prompts([prompts[i] for i in rows], pad).items()}
            width = inputs["input_ids"].shape[1]
            criteria = StoppingCriteriaList([_StopStrings(tokenizer, stop_strings, width)]) if stop_strings else None
            # A static (pre-allocated) KV cache: the default dynamic one concatenates at every step, which
            # is half the CPU time of a small model's decoding; the tokens are the same.
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                    top_p=None, top_k=None, temperature=None, use_cache=True, pad_token_id=pad,
                                    eos_token_id=_eos_ids(model, tokenizer) or None,
                                    cache_implementation="static" if static_cache else None,
                                    stopping_criteria=criteria)  # (B, width + new)
            decoded = tokenizer.batch_decode(output[:, width:], skip_special_tokens=True,
                                             clean_up_tokenization_spaces=True)
            for i, text in zip(rows, decoded):
                texts[i] = cut_generation(text, stops)
    if hasattr(model, "_previous_max_cache_length"):  # generate's static-cache size memo: leave no trace
        del model._previous_max_cache_length
    return texts


def generate_answers(model, tokenizer, questions: list[str], fmt, config) -> list[str]:
    """Greedy answers to ``questions`` in prompt format ``fmt`` with ``config``'s generation settings."""
    return generate_texts(model, tokenizer, fmt.prompts_ids(tokenizer, list(questions)), config.max_new_tokens,
                          config.batch_size, config.stop_strings)
