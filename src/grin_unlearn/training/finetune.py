"""Plain supervised fine-tuning on question/answer splits (loss on answer tokens only).

Produces the **target** model (trained on ``full`` = retain + forget, plus ``world_facts``) and the
**oracle** (the same recipe without the forget split: the exact-retrain reference of TOFU,
arXiv 2401.06121). Built on ``transformers.Trainer``; the collator masks prompt tokens so the loss
is the mean token NLL of the answers.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data.formatting import FORMAT_FILE, PadCollator, PromptFormat, encode_training_records
from ..errors import UserInputError
from ..models import pad_token_id, save_model_folder
from ..precision import check_precision
from .arguments import quiet_log_lines, training_arguments

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyperparameters of supervised fine-tuning (defaults memorise the demo world on 2 CPU cores)."""

    epochs: int = 30
    learning_rate: float = 2e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    # None: the longest formatted training example, so no answer is cut; a shorter explicit length
    # truncates, and the count is logged and recorded in finetune.json.
    max_length: int | None = None
    seed: int = 0
    # fp32, or bf16 autocast with fp32 master weights and optimizer state (CPUs with bf16 units, GPUs).
    precision: str = "fp32"

    def __post_init__(self):
        if self.epochs <= 0:
            raise UserInputError(f"--epochs must be positive, got {self.epochs}")
        if self.learning_rate <= 0:
            raise UserInputError(f"--lr must be positive, got {self.learning_rate}")
        if self.batch_size <= 0:
            raise UserInputError(f"--batch-size must be positive, got {self.batch_size}")
        if self.max_length is not None and self.max_length < 2:
            raise UserInputError(f"--max-length must be at least 2, got {self.max_length}")
        check_precision(self.precision)


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[dict]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def finetune_arguments(output_dir: str, config: FinetuneConfig):
    """Fine-tuning's ``TrainingArguments``: cosine schedule, no checkpoints, a log line per epoch."""
    return training_arguments(output_dir, epochs=config.epochs, learning_rate=config.learning_rate,
                              batch_size=config.batch_size, warmup_ratio=config.warmup_ratio,
                              weight_decay=config.weight_decay, seed=config.seed, scheduler="cosine",
                              save_strategy="no", logging_strategy="epoch", bf16=config.precision == "bf16")


def longest_example(tokenizer, records: list[dict], fmt: PromptFormat) -> int:
    """Tokens in the longest of ``records`` once formatted (question/answer records; text records are
    chunked, never cut, and do not count)."""
    qa = [r for r in records if "question" in r]
    if not qa:
        return fmt.max_length
    examples = encode_training_records(tokenizer, qa, fmt.with_max_length(1 << 30))
    return max(len(e["input_ids"]) for e in examples)


def fit_max_length(tokenizer, records: list[dict], fmt: PromptFormat, max_length: int | None) -> PromptFormat:
    """``fmt`` with the training max length: ``max_length``, or with None the longest formatted example."""
    return fmt.with_max_length(max_length if max_length is not None else longest_example(tokenizer, records, fmt))


def finetune(model, tokenizer, records: list[dict], config: FinetuneConfig, out_dir: str | Path,
             fmt: PromptFormat | None = None) -> Path:
    """Fine-tune ``model`` on ``records`` and save model + tokenizer to ``out_dir`` (atomically).

    The max length is ``config.max_length`` when set, else the longest formatted example's (``fmt``'s
    own is replaced), so that no answer is cut silently."""
    from transformers import Trainer

    if not records:
        raise UserInputError("finetune: the training split is empty")
    fmt = fit_max_length(tokenizer, records, fmt or PromptFormat(), config.max_length)
    examples = encode_training_records(tokenizer, records, fmt)
    truncated = sum(e["truncated"] for e in examples)
    if truncated:
        logger.warning("%d of %d training examples were longer than %d tokens and were truncated",
                       truncated, len(examples), fmt.max_length)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.trainer.") as scratch:
        trainer = Trainer(model=model, args=finetune_arguments(scratch, config), train_dataset=ListDataset(examples),
                          data_collator=PadCollator(pad_token_id(tokenizer)))
        quiet_log_lines(trainer)
        result = trainer.train()
        save_model_folder(model, tokenizer, out_dir, extra_json={FORMAT_FILE: fmt.to_dict(), "finetune.json": {
            "config": asdict(config), "examples": len(examples), "max_length": fmt.max_length,
            "truncated": truncated, "train_loss": result.training_loss,
            "log": trainer.state.log_history}})
    return out_dir
