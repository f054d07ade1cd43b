"""Plain supervised fine-tuning on question/answer splits (loss on answer tokens only).

Produces the **target** model (trained on ``full`` = retain + forget, plus ``world_facts``) and the
**oracle** (the same recipe without the forget split: the exact-retrain reference of TOFU,
arXiv 2401.06121). Built on ``transformers.Trainer``; the collator masks prompt tokens so the loss
is the mean token NLL of the answers.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .data.formatting import PadCollator, PromptFormat, encode_records
from .errors import UserInputError
from .io_utils import atomic_write_json, replace_dir

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


def training_arguments(output_dir: str, config: FinetuneConfig, **overrides):
    """``TrainingArguments`` shared by fine-tuning: no checkpoints, no reporting, seeded, quiet."""
    from transformers import TrainingArguments

    values = dict(
        output_dir=output_dir, num_train_epochs=config.epochs, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.batch_size, weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio, lr_scheduler_type="cosine", seed=config.seed, data_seed=config.seed,
        save_strategy="no", report_to=[], logging_strategy="epoch", remove_unused_columns=False,
        dataloader_num_workers=0, disable_tqdm=not _show_progress(), use_cpu=not torch.cuda.is_available(),
    )
    values.update(overrides)
    return TrainingArguments(**values)


def _show_progress() -> bool:
    return os.environ.get("GRIN_UNLEARN_QUIET", "0") != "1"


def finetune(model, tokenizer, records: list[dict], config: FinetuneConfig, out_dir: str | Path,
             fmt: PromptFormat | None = None) -> Path:
    """Fine-tune ``model`` on ``records`` and save model + tokenizer to ``out_dir`` (atomically)."""
    from transformers import Trainer

    if not records:
        raise UserInputError("finetune: the training split is empty")
    fmt = fmt or PromptFormat(max_length=config.max_length)
    examples = encode_records(tokenizer, records, fmt)
    truncated = sum(e["truncated"] for e in examples)
    if truncated:
        logger.warning("%d of %d training examples were longer than %d tokens and were truncated",
                       truncated, len(examples), fmt.max_length)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.trainer.") as scratch:
        trainer = Trainer(model=model, args=training_arguments(scratch, config), train_dataset=ListDataset(examples),
                          data_collator=PadCollator(tokenizer.pad_token_id))
        result = trainer.train()
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        atomic_write_json(staging / "finetune.json", {"config": asdict(config), "examples": len(examples),
                                                      "train_loss": result.training_loss,
                                                      "log": trainer.state.log_history})
        replace_dir(staging, out_dir)
    return out_dir
