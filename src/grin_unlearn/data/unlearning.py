"""Paired forget/retain examples for unlearning, and their collator.

Item ``i`` holds the ``i``-th forget example (question + true answer), the same question with its
refusal answer (for PO / IdkDPO), and a retain example drawn by a seeded permutation that cycles
through the retain set, so every forget batch comes with a retain batch of the same size.
"""

from __future__ import annotations

import random

import torch

from .formatting import PadCollator, PromptFormat, encode_records
from .refusals import refusal_for

GROUPS = ("forget", "refusal", "retain")


class UnlearningDataset(torch.utils.data.Dataset):
    def __init__(self, tokenizer, forget: list[dict], retain: list[dict], fmt: PromptFormat,
                 seed: int = 0, refusals: list[str] | None = None):
        self.forget = encode_records(tokenizer, forget, fmt)
        answers = refusals or [refusal_for(i) for i in range(len(forget))]
        self.refusal = encode_records(tokenizer, forget, fmt, answers=[answers[i % len(answers)] for i in range(len(forget))])
        self.retain = encode_records(tokenizer, retain, fmt) if retain else []
        order = list(range(len(self.retain)))
        random.Random(seed).shuffle(order)
        self.retain_order = order
        self.truncated = sum(e["truncated"] for group in (self.forget, self.refusal, self.retain) for e in group)

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, index: int) -> dict:
        item = {"index": index, "forget": self.forget[index], "refusal": self.refusal[index]}
        if self.retain:
            item["retain"] = self.retain[self.retain_order[index % len(self.retain)]]
        return item


class UnlearningCollator:
    """Pads each group separately: ``{"index": (B,), "forget": {...}, "refusal": {...}, "retain": {...}}``."""

    def __init__(self, pad_token_id: int):
        self.pad = PadCollator(pad_token_id)

    def __call__(self, items: list[dict]) -> dict:
        batch = {"index": torch.tensor([item["index"] for item in items])}
        for group in GROUPS:
            if group in items[0]:
                batch[group] = self.pad([item[group] for item in items])
        return batch
