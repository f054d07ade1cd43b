"""The one mapping from our configs onto ``transformers.TrainingArguments`` (fine-tuning and unlearning).

Both ends of the transformers range we declare (4.45 … 5.x) must train the same way, and three
arguments changed meaning across it:

* warm-up: 4.x has ``warmup_ratio`` and an integer ``warmup_steps``; 5.x dropped ``warmup_ratio`` and
  reads a float ``warmup_steps`` in ``[0, 1)`` as the ratio. We pass the ratio to whichever field
  means "ratio" in the installed version, so both compute ``ceil(ratio · total_steps)`` warm-up steps.
* gradient checkpointing: 4.x defaults to reentrant checkpointing, which sends no gradient to the
  blocks when the embeddings are frozen (as in masked unlearning), and 5.x renamed the argument; so
  it is not a ``TrainingArguments`` field here: :func:`enable_gradient_checkpointing` switches it on
  on the model, non-reentrant, on every version.
* the dtype keyword of ``from_pretrained`` is handled in :func:`grin_unlearn.models.load_model`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from functools import cache

import torch

from ..progress import show_progress


@cache
def _training_argument_names() -> frozenset[str]:
    from transformers import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments))


def warmup_arguments(ratio: float) -> dict:
    """``{field: ratio}`` for the field that reads a warm-up *ratio* in the installed transformers."""
    return {"warmup_ratio": ratio} if "warmup_ratio" in _training_argument_names() else {"warmup_steps": ratio}


def training_arguments(output_dir: str, *, epochs: int, learning_rate: float, batch_size: int,
                       warmup_ratio: float, weight_decay: float, seed: int, scheduler: str, **extra):
    """``TrainingArguments`` for every training run of the library.

    Common to all runs: seeded model and data order, no reporting integrations, no dataloader
    workers, the columns our collators need kept, CPU when no CUDA device exists (gloo for a
    multi-process CPU run), progress bars per :func:`grin_unlearn.progress.show_progress`.
    ``extra`` sets any other field (checkpointing, logging cadence, bf16, ...).
    """
    from transformers import TrainingArguments

    cpu_distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    values = dict(
        output_dir=output_dir, num_train_epochs=epochs, learning_rate=learning_rate,
        per_device_train_batch_size=batch_size, weight_decay=weight_decay, lr_scheduler_type=scheduler,
        seed=seed, data_seed=seed, report_to=[], remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), ddp_backend="gloo" if cpu_distributed else None,
        disable_tqdm=not show_progress(),
        **warmup_arguments(warmup_ratio),
    )
    values.update(extra)
    return TrainingArguments(**values)


def enable_gradient_checkpointing(model) -> None:
    """Non-reentrant activation checkpointing on ``model`` (gradients reach blocks behind frozen embeddings)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def quiet_log_lines(trainer) -> None:
    """Keep ``trainer``'s progress bar but print its per-step log dicts only at INFO level (``-v``): they
    go to the run folder's ``train_log.json`` anyway, and a newcomer's console shows bars and tables.
    Applies to the bar (``ProgressCallback``) and to the printer the Trainer uses without a bar."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in (ProgressCallback, PrinterCallback):
        if trainer.pop_callback(callback) is not None:
            trainer.add_callback(type(f"Quiet{callback.__name__}", (callback,), {"on_log": _log_if_verbose(callback)}))


def _log_if_verbose(callback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if logging.getLogger("grin_unlearn").isEnabledFor(logging.INFO):
            return callback.on_log(self, args, state, control, logs=logs, **kwargs)
        return None

    return on_log
