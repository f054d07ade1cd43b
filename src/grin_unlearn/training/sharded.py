"""Masked unlearning under FSDP2: a compact training loop in place of ``Trainer.train``.

The pipeline wraps the model with ``fully_shard`` itself, before scoring (GRIN step 1 needs the
sharded model long before any Trainer exists), and then cannot hand it to ``Trainer.train``:

* on CPUs accelerate has no FSDP mode (its ``distributed_type`` stays ``MULTI_CPU`` whatever the
  launch config), so ``Trainer.train`` wraps the sharded model in DDP, which fails on ``DTensor``s;
* on GPUs ``Trainer.train`` would take accelerate's FSDP2 path, whose checkpoints go through
  ``torch.distributed.checkpoint`` optimizer state dicts that expect parameter-shaped moments, while
  :class:`~grin_unlearn.training.masked_optim.MaskedAdamW` keeps ``(k,)`` moments of the selected
  entries only; and that path could not be tested here.

So this loop, the same on CPU and GPU, drives the :class:`~grin_unlearn.training.trainer.UnlearningTrainer`
the pipeline built, reusing its pieces so the two paths cannot drift apart: the data loader
(``get_train_dataloader``: the same seeded sampler and per-process sharding as under DDP), the
optimizer and learning-rate schedule (``create_optimizer_and_scheduler``: ``MaskedAdamW``, linear
warm-up and decay), the loss (``compute_loss``: objective, reference log-probs, NaN check) and the log
(``log``: loss, grad norm, learning rate and the objective's terms into ``state.log_history``).

One optimizer step over ``A`` micro-batches (``A`` = ``gradient_accumulation_steps``; an epoch's last
window may be shorter, as in the Trainer, which also counts ``ceil(len(loader) / A)`` steps per epoch):

    for each micro-batch i:  backward of  L_i / A_window
                             (FSDP2 reduce-scatters only after the last: set_requires_gradient_sync)
    g ← mean over processes of the accumulated gradients   (FSDP2's default reduce-scatter, as DDP's all-reduce)
    clip: g ← g · min(1, c / (‖g‖₂ + 1e-6)), ‖g‖₂ over every shard of every trainable tensor
    MaskedAdamW step on each process's shards; scheduler step

Not supported here (refused before any work by the pipeline): checkpoints and ``--resume``.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..parallel.distributed import rank_and_world_size
from ..parallel.sharding import all_reduce_sum, is_sharded
from .trainer import NonFiniteLossError


def train_sharded(trainer) -> float:
    """Train ``trainer.model`` (wrapped by ``fully_shard``) for ``args.num_train_epochs``; return the mean loss."""
    from accelerate.utils import send_to_device

    args, model, state = trainer.args, trainer.model, trainer.state
    world = rank_and_world_size()[1]
    loader = trainer.get_train_dataloader()
    if trainer.accelerator.num_processes != world:
        raise RuntimeError(f"the Trainer's data loader is sharded over {trainer.accelerator.num_processes} "
                           f"processes, but {world} are running")
    accumulation = args.gradient_accumulation_steps
    updates_per_epoch = max(math.ceil(len(loader) / accumulation), 1)
    max_steps = math.ceil(args.num_train_epochs * updates_per_epoch)
    trainer.create_optimizer_and_scheduler(num_training_steps=max_steps)
    optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
    params = [p for p in model.parameters() if p.requires_grad]
    state.max_steps, state.global_step, state.epoch = max_steps, 0, 0.0
    model.train()
    start, loss_sum = time.perf_counter(), 0.0
    for epoch in range(math.ceil(args.num_train_epochs)):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        batches = iter(loader)
        for update in range(updates_per_epoch):
            window = [send_to_device(b, args.device) for b in _take(batches, min(accumulation, len(loader) - update * accumulation))]
            loss = sum(_micro_step(trainer, model, batch, len(window), last=i == len(window) - 1)
                       for i, batch in enumerate(window))
            norm = _clip(params, args.max_grad_norm)
            learning_rate = scheduler.get_last_lr()[0]  # the rate of this step, as the Trainer logs it
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            state.epoch = epoch + (update + 1) / updates_per_epoch
            mean_loss = float(all_reduce_sum(np.array([loss], dtype=np.float64))[0]) / world
            loss_sum += mean_loss
            logs = {"loss": mean_loss} | ({"grad_norm": norm} if norm is not None else {})
            trainer.log(logs | {"learning_rate": learning_rate})
            if state.global_step >= max_steps:
                break
        if state.global_step >= max_steps:
            break
    train_loss = loss_sum / max(state.global_step, 1)
    trainer.log({"train_runtime": round(time.perf_counter() - start, 4), "train_loss": train_loss})
    return train_loss


def _take(iterator, count: int) -> list:
    return [next(iterator) for _ in range(count)]


def _micro_step(trainer, model, batch: dict, window: int, last: bool) -> float:
    """Forward + backward of one micro-batch (loss / window); returns its loss. Raises on every process
    together when any process's loss is NaN/inf (one alone would leave the others waiting in a collective)."""
    model.set_requires_gradient_sync(last)
    error = None
    with trainer.compute_loss_context_manager():
        try:
            loss = trainer.compute_loss(model, batch)
        except NonFiniteLossError as err:
            error = err
    if all_reduce_sum(np.array([error is not None], dtype=np.int64))[0]:
        raise error or NonFiniteLossError(f"the {trainer.objective.name} loss became NaN or inf on another process "
                                          f"at step {trainer.state.global_step + 1}")
    (loss / window).backward()
    return float(loss.detach()) / window


def _clip(params: list[torch.Tensor], max_norm: float | None) -> float | None:
    """Clip the gradients to total L2 norm ``max_norm`` (as ``clip_grad_norm_``) over all shards; the norm."""
    if not max_norm or max_norm <= 0:
        return None
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if is_sharded(total):  # the per-shard partial norms, combined over the processes
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)
