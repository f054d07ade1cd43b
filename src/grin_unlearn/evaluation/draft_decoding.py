"""Greedy generation that starts from the teacher-forced pass, with the gold answer as the draft.

The teacher-forced pass over ``prompt + answer`` (:func:`~.engine.score_examples`) already holds, at
each answer position ``j``, the model's argmax given the prompt and the gold tokens ``y_<j``. Greedy
decoding from the prompt picks ``argmax π(· | prompt, ŷ_<j)`` given its own tokens; as long as those
equal the gold ones, both are the same prediction. So the greedy tokens are

    ŷ = y_1 … y_{k−1}, a_k        k = the first position whose argmax a_k differs from y_k

and only from ``prompt + ŷ`` on is anything left to decode; when every argmax matches up to an EOS the
generation is complete without a decoding step. This is speculative decoding's greedy case
(Leviathan et al. 2023, arXiv 2211.17192) with the gold answer as the draft model's output and the
teacher-forced pass as its verification. A model that still knows an answer reproduces it, so on a
fine-tuned model most rows need no decoding; a model that forgot it diverges early and is decoded as
before.

The draft applies only where the scored sequence begins with the generation prompt and its labels start
right after it (chat templates; not the plain ``Question: …\\nAnswer: `` format of tokenizers whose
trailing space merges into the answer's first token, where generation starts from a lone space
token); other rows are decoded from their prompt. Stop strings: a draft whose text already holds one
ends there (the text is cut at the stop string either way). The argmax of the teacher-forced pass and
of a cached decoding step can differ only on a near-tie, where fp32 summation order decides:
``bench/bench_reference.py`` counts identical generations against the reference.
"""

from __future__ import annotations

from ..logprobs import IGNORE_INDEX
from ..models import model_device
from .engine import AnswerScore, generation_eos_ids, decode_generation, generate_token_ids, kv_bytes_per_row


def accepted_tokens(prompt_ids: list[int], example: dict, score: AnswerScore, eos_ids: list[int],
                    max_new_tokens: int) -> tuple[list[int], bool] | None:
    """``(ŷ, finished)``: the greedy tokens the teacher-forced argmax fixes (module doc), and whether
    the generation ends with them (an EOS, or ``max_new_tokens`` reached). None when the example does
    not begin with ``prompt_ids`` followed by its labels."""
    start = len(prompt_ids)
    labels = example["labels"]
    if example["input_ids"][:start] != list(prompt_ids) or start >= len(labels) or labels[start] == IGNORE_INDEX \
            or (start and labels[start - 1] != IGNORE_INDEX):
        return None
    tokens: list[int] = []
    for gold, predicted in zip(score.labels, score.argmax):
        tokens.append(predicted)
        if predicted in eos_ids or len(tokens) >= max_new_tokens:
            return tokens, True
        if predicted != gold:
            return tokens, False
    return tokens, False


def generate_from_drafts(model, tokenizer, prompts: list[list[int]], drafts: list[tuple[dict, AnswerScore] | None],
                         config) -> list[str]:
    """Greedy generations of ``prompts`` (post-processed as :func:`~.engine.generate_texts`) with
    ``config``'s length, stop strings and decoding batch; ``drafts[i]`` is ``(encoded example,
    its teacher-forced score)`` of a gold answer to prompt ``i``, or None."""
    eos_ids, stops, limit = generation_eos_ids(model, tokenizer), list(config.stop_strings), config.max_new_tokens
    new: list[list[int]] = []
    pending: list[int] = []  # rows left to decode from prompt + accepted tokens
    for i, (prompt, draft) in enumerate(zip(prompts, drafts)):
        accepted = accepted_tokens(prompt, draft[0], draft[1], eos_ids, limit) if draft else None
        tokens, finished = accepted if accepted else ([], False)
        if not finished and tokens and stops and decode_generation(tokenizer, tokens, stops) != \
                decode_generation(tokenizer, tokens):
            finished = True  # a stop string is already in the text: generation would stop there
        new.append(tokens)
        if not finished:
            pending.append(i)
    if pending:
        contexts = [prompts[i] + new[i] for i in pending]
        budget = max(limit - len(new[i]) for i in pending)
        batch = config.decoding_batch(model_device(model), kv_bytes_per_row(model, max(map(len, contexts)) + budget))
        for i, continuation in zip(pending, generate_token_ids(model, tokenizer, contexts, budget, batch, stops)):
            new[i] = new[i] + continuation[:limit - len(new[i])]
    return [decode_generation(tokenizer, tokens, stops) for tokens in new]
