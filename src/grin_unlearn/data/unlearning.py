"""Paired forget/retain examples for unlearning, and their collator.

Item ``i`` holds the ``i``-th forget example (question + true answer), the same question with its
refusal answer (for PO / IdkDPO), and a retain example drawn by a seeded permutation that cycles
through the retain set, so every forget batch comes with a retain batch of the same size.

Raw-text records (``text``, no ``question``: WMDP's corpora) become chunks of ``fmt.max_length``
tokens with labels on every token (:func:`~grin_unlearn.data.formatting.encode_text`), so an item is
then a forget *chunk*. A text forget set has no questions to refuse, so it has no refusal group:
objectives that need refusals (PO, IdkDPO) reject it (:func:`check_objective_accepts`).
"""

from __future__ import annotations

import random

import torch

from ..errors import UserInputError
from .formatting import PadCollator, PromptFormat, encode_records, encode_training_records, is_text_record
from .refusals import refusal_for

GROUPS = ("forget", "refusal", "retain")


class UnlearningDataset(torch.utils.data.Dataset):
    def __init__(self, tokenizer, forget: list[dict], retain: list[dict], fmt: PromptFormat,
                 seed: int = 0, refusals: list[str] | None = None):
        self.forget = encode_training_records(tokenizer, forget, fmt)
        if forget and not self.forget:
            raise UserInputError("forget set: no example left after encoding (every text is under 2 tokens)")
        if has_text_records(forget):  # documents have no question to answer with a refusal
            self.refusal = []
        else:
            answers = refusals or [refusal_for(i) for i in range(len(forget))]
            self.refusal = encode_records(tokenizer, forget, fmt,
                                          answers=[answers[i % len(answers)] for i in range(len(forget))])
        self.retain = encode_training_records(tokenizer, retain, fmt) if retain else []
        order = list(range(len(self.retain)))
        random.Random(seed).shuffle(order)
        self.retain_order = order
        self.truncated = sum(e["truncated"] for group in (self.forget, self.refusal, self.retain) for e in group)

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, index: int) -> dict:
        item = {"index": index, "forget": self.forget[index]}
        if self.refusal:
            item["refusal"] = self.refusal[index]
        if self.retain:
            item["retain"] = self.retain[self.retain_order[index % len(self.retain)]]
        return item


def has_text_records(records: list[dict]) -> bool:
    """True when any record is raw text (``text``, no ``question``)."""
    return any(is_text_record(r) for r in records)


def check_objective_accepts(forget: list[dict], objective: str, needs_refusal: bool) -> None:
    """Refuse a raw-text forget set for an objective trained towards refusals (PO, IdkDPO)."""
    if needs_refusal and has_text_records(forget):
        raise UserInputError(
            f"--objective {objective}: needs a refusal answer to each forget question, but the forget set is "
            "raw text (documents without questions); use an objective that works on documents "
            "(ga, graddiff, npo, simnpo) or a question/answer forget set")


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
