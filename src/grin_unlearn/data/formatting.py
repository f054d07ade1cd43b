"""Prompt formatting, tokenisation with answer-only labels, and the padding collator.

An example is ``prompt + answer``: the prompt is ``Question: {question}\nAnswer:`` (or the tokenizer's
chat template when asked) and the answer is `` {answer}`` followed by EOS. Prompt and answer are
tokenised separately and concatenated, so the answer tokens are exactly what greedy generation from
the prompt produces; the labels are IGNORE_INDEX on prompt and padding, so every loss and log-prob is
over answer tokens only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import UserInputError
from ..logprobs import IGNORE_INDEX

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class PromptFormat:
    """How a question becomes a prompt. ``chat_template=True`` uses ``tokenizer.apply_chat_template``."""

    template: str = PROMPT_TEMPLATE
    chat_template: bool = False
    max_length: int = 128

    def prompt_ids(self, tokenizer, question: str) -> list[int]:
        if self.chat_template:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                add_generation_prompt=True, tokenize=True)
            return list(ids["input_ids"] if isinstance(ids, dict) else ids)
        ids = tokenizer(self.template.format(question=question), add_special_tokens=False)["input_ids"]
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        return bos + list(ids)

    def answer_ids(self, tokenizer, answer: str) -> list[int]:
        ids = tokenizer((" " if not self.chat_template else "") + answer, add_special_tokens=False)["input_ids"]
        return list(ids) + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def encode_example(tokenizer, question: str, answer: str, fmt: PromptFormat) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` (prompt masked) of one question/answer pair, truncated to max_length.

    Truncation keeps the whole prompt when it can and cuts the answer's tail; ``truncated`` says whether
    anything was cut (the caller counts these and warns once).
    """
    prompt = fmt.prompt_ids(tokenizer, question)
    answer_ids = fmt.answer_ids(tokenizer, answer)
    truncated = len(prompt) + len(answer_ids) > fmt.max_length
    if truncated:
        # Keep the answer's head (at least half the budget) and the prompt's tail right before it.
        answer_ids = answer_ids[: max(fmt.max_length - len(prompt), fmt.max_length // 2)]
        prompt = prompt[len(prompt) - (fmt.max_length - len(answer_ids)):]
    return {"input_ids": prompt + answer_ids, "labels": [IGNORE_INDEX] * len(prompt) + answer_ids,
            "truncated": truncated}


def encode_records(tokenizer, records: list[dict], fmt: PromptFormat, answer_key: str = "answer",
                   answers: list[str] | None = None) -> list[dict]:
    """Encode every record's question with ``answers[i]`` (or its ``answer_key`` field)."""
    texts = answers if answers is not None else [r[answer_key] for r in records]
    return [encode_example(tokenizer, r["question"], a, fmt) for r, a in zip(records, texts)]


def is_text_record(record: dict) -> bool:
    """A raw-text record (``text``, no ``question``): a document to learn or unlearn as a whole."""
    return "text" in record and "question" not in record


def encode_text(tokenizer, text: str, max_length: int) -> list[dict[str, list[int]]]:
    """A raw document as consecutive chunks of at most ``max_length`` tokens, labels on every token.

    The document is tokenised once (BOS first, EOS last when the tokenizer has them) and cut into
    chunks, so no token is lost to truncation; a last chunk of a single token (nothing to predict)
    is dropped. Raw-text unlearning (WMDP corpora, arXiv 2403.03218) scores the whole document, so
    ``labels == input_ids`` (the shift in :func:`~grin_unlearn.logprobs.sequence_logprobs` skips the
    first token of each chunk).
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 to score a chunk, got {max_length}")
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids = bos + list(tokenizer(text, add_special_tokens=False)["input_ids"]) + eos
    chunks = [ids[start:start + max_length] for start in range(0, len(ids), max_length)]
    return [{"input_ids": chunk, "labels": list(chunk), "truncated": False} for chunk in chunks if len(chunk) >= 2]


def encode_training_records(tokenizer, records: list[dict], fmt: PromptFormat) -> list[dict]:
    """Question/answer records as :func:`encode_example`, raw ``text`` records as :func:`encode_text` chunks.

    The result has one example per question/answer record and one per text chunk, in record order.
    """
    examples = []
    for index, record in enumerate(records):
        if is_text_record(record):
            if not isinstance(record["text"], str) or not record["text"].strip():
                raise UserInputError(f"text record {index}: needs a non-empty string field 'text'")
            examples.extend(encode_text(tokenizer, record["text"], fmt.max_length))
        else:
            examples.append(encode_example(tokenizer, record["question"], record["answer"], fmt))
    return examples


@dataclass
class PadCollator:
    """Right-pad ``input_ids``/``labels`` to the longest example of the batch; build the attention mask."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            input_ids[row, :n] = torch.tensor(example["input_ids"])
            labels[row, :n] = torch.tensor(example["labels"])
            attention[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def left_pad_prompts(prompts: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Left-pad prompts for batched generation (decoder-only models continue from the right edge)."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt):] = torch.tensor(prompt)
        attention[row, width - len(prompt):] = 1
    return {"input_ids": input_ids, "attention_mask": attention}
