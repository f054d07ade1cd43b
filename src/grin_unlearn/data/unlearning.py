"""Paired forget/retain examples for unlearning, and their collator.

An item holds one forget example (question + true answer), the same question with its refusal answer
(for PO / IdkDPO) and one retain example, so every forget batch comes with a retain batch of the same
size. Which forget and which retain example go together is decided by :class:`PairedSampler`:

* the forget examples are visited in a seeded permutation per epoch (every one once per epoch);
* the retain examples form one endless stream, ``r(k)`` for the ``k``-th draw of the run
  (``k = epoch · F + position``): the stream is cut into cycles of ``R`` draws, and cycle ``c`` is a
  seeded permutation of the whole retain set. So the retain batches are drawn without replacement
  and carry on across steps and epochs: over ``⌈R/F⌉`` epochs every retain example is used, and no
  retain example is used twice before all have been used once.

Both are pure functions of ``(seed, epoch, position)``: a run resumed from a checkpoint (the Trainer
calls ``set_epoch`` and skips the batches already trained) draws exactly the examples an uninterrupted
run draws, and every process of a distributed run computes the same pairs. The reference
implementations draw a fresh uniform retain example on each access (open-unlearning
``src/data/unlearn.py`` ``ForgetRetainDataset``); sampling without replacement covers the retain set
with the same number of draws.

Raw-text records (``text``, no ``question``: WMDP's corpora) become chunks of ``fmt.max_length``
tokens with labels on every token (:func:`~grin_unlearn.data.formatting.encode_text`), so an item is
then a forget *chunk*. A text forget set has no questions to refuse, so it has no refusal group:
objectives that need refusals (PO, IdkDPO) reject it (:func:`check_objective_accepts`).
"""

from __future__ import annotations

import torch

from ..errors import UserInputError
from ..seeding import named_generator
from .formatting import PadCollator, PromptFormat, encode_records, encode_training_records, is_text_record
from .refusals import refusal_for

GROUPS = ("forget", "refusal", "retain")


class UnlearningDataset(torch.utils.data.Dataset):
    """Encoded forget, refusal and retain examples; indexed by a forget index or a ``(forget, retain)`` pair.

    ``dataset[i]`` is forget example ``i`` (and its refusal) without a retain example (what the
    reference pass needs); ``dataset[(i, j)]`` adds retain example ``j``, as :class:`PairedSampler`
    yields them.
    """

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
        self.seed = seed
        self.truncated = sum(e["truncated"] for group in (self.forget, self.refusal, self.retain) for e in group)

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, key: int | tuple[int, int | None]) -> dict:
        index, retain_index = key if isinstance(key, tuple) else (key, None)
        item = {"index": index, "forget": self.forget[index]}
        if self.refusal:
            item["refusal"] = self.refusal[index]
        if retain_index is not None:
            item["retain_index"] = retain_index
            item["retain"] = self.retain[retain_index]
        return item

    def sampler(self) -> "PairedSampler":
        """The :class:`PairedSampler` of this dataset (seeded with the dataset's ``seed``)."""
        return PairedSampler(len(self.forget), len(self.retain), self.seed)


class PairedSampler(torch.utils.data.Sampler):
    """Yields ``(forget_index, retain_index)`` pairs, one epoch per iteration (see the module docstring).

    ``retain_index`` is None when there is no retain set. ``set_epoch(e)`` (called by the Trainer and by
    accelerate before each epoch, also on resume) selects the epoch; the pairs of an epoch depend only
    on ``(seed, epoch)``.
    """

    def __init__(self, forget_size: int, retain_size: int, seed: int = 0):
        self.forget_size, self.retain_size, self.seed = forget_size, retain_size, int(seed)
        self.epoch = 0
        self._cycle: tuple[int, list[int]] | None = None  # (cycle number, its permutation)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.forget_size

    def __iter__(self):
        order = self._permutation("forget", self.epoch, self.forget_size)
        start = self.epoch * self.forget_size  # draws made by the epochs before this one
        for position, index in enumerate(order):
            yield index, (self.retain_index(start + position) if self.retain_size else None)

    def retain_index(self, draw: int) -> int:
        """The retain example of the ``draw``-th draw of the run: ``perm_c[draw mod R]``, ``c = draw // R``."""
        cycle, position = divmod(draw, self.retain_size)
        if self._cycle is None or self._cycle[0] != cycle:
            self._cycle = (cycle, self._permutation("retain", cycle, self.retain_size))
        return self._cycle[1][position]

    def _permutation(self, what: str, number: int, size: int) -> list[int]:
        generator = named_generator(f"grin-pairs:{self.seed}:{what}:{number}")
        return torch.randperm(size, generator=generator).tolist()


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
    """Pads each group separately: ``{"index": (B,), "forget": {...}, "refusal": {...}, "retain": {...}}``.

    With retain examples the batch also holds ``"retain_index": (B,)``, which retain examples were drawn.
    """

    def __init__(self, pad_token_id: int):
        self.pad = PadCollator(pad_token_id)

    def __call__(self, items: list[dict]) -> dict:
        batch = {"index": torch.tensor([item["index"] for item in items])}
        if "retain_index" in items[0]:
            batch["retain_index"] = torch.tensor([item["retain_index"] for item in items])
        for group in GROUPS:
            if group in items[0]:
                batch[group] = self.pad([item[group] for item in items])
        return batch
