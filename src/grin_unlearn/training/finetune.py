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
    max_length: int = 64
    seed: int = 0

    def __post_init__(self):
        if self.epochs <= 0:
            raise UserInputError(f"--epochs must be positive, got {self.epochs}")
        if self.learning_rate <= 0:
            raise UserInputError(f"--lr must be positive, got {self.learning_rate}")
        if self.batch_size <= 0:
            raise UserInputError(f"--batch-size must be positive, got {self.batch_size}")


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
                              save_strategy="no", logging_strategy="epoch")


def finetune(model, tokenizer, records: list[dict], config: FinetuneConfig, out_dir: str | Path,
             fmt: PromptFormat | None = None) -> Path:
    """Fine-tune ``model`` on ``records`` and save model + tokenizer to ``out_dir`` (atomically)."""
    from transformers import Trainer

    if not records:
        raise UserInputError("finetune: the training split is empty")
    fmt = fmt or PromptFormat(max_length=config.max_length)
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
            "config": asdict(config), "examples": len(examples), "train_loss": result.training_loss,
            "log": trainer.state.log_history}})
    return out_dir
