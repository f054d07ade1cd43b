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
