"""Process-group helpers: who writes files, barriers, all-reduce of accumulators, launch-mode checks.

Everything here is a no-op (or the single-process answer) when ``torch.distributed`` is not
initialised, so the library runs the same code in one process and under ``torchrun`` /
``accelerate launch``. See ``docs/distributed.md``.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .errors import UserInputError


def is_distributed() -> bool:
    """True inside an initialised ``torch.distributed`` process group."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside ``torch.distributed``."""
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True outside ``torch.distributed`` and on global rank 0 inside it (the process that writes files)."""
    return rank_and_world_size()[0] == 0


def wait_for_everyone() -> None:
    """A barrier over all processes when ``torch.distributed`` is initialised; a no-op otherwise."""
    if is_distributed():
        dist.barrier()


def reduce_across_processes(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sum every tensor over all processes (in place) when ``torch.distributed`` is initialised.

    The seam for multi-process influence: each process accumulates its shard, this makes every process
    hold the full-set sum ``G = Σ_processes G_rank`` before any ``abs`` or ratio. A no-op otherwise.
    NCCL cannot reduce CPU tensors, so CPU accumulators go through the current CUDA device one at a time.
    """
    if not is_distributed():
        return tensors
    via_cuda = dist.get_backend() == "nccl"
    for tensor in tensors.values():
        if via_cuda and tensor.device.type == "cpu":
            staged = tensor.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(staged, op=dist.ReduceOp.SUM)
            tensor.copy_(staged)
        else:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensors


def check_launch_mode(masked: bool) -> None:
    """Refuse, before any scoring, the ``accelerate launch`` modes this pipeline cannot run correctly.

    :class:`~grin_unlearn.training.masked_optim.MaskedAdamW` indexes each whole parameter with its
    full-shape mask, but FSDP and DeepSpeed hand the optimizer flat shards (FSDP's flat parameters,
    ZeRO's fp32 partitions), so masked runs need DDP. Under FSDP and ZeRO-3 every process holds only a
    shard of each weight, so ``model.save_pretrained`` would not see whole weights either, masked or not.
    """
    env = os.environ
    fsdp = env.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    deepspeed = env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    zero3 = deepspeed and env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    mode = "FSDP" if fsdp else "DeepSpeed ZeRO-3" if zero3 else "DeepSpeed" if deepspeed else None
    if mode is not None and (masked or fsdp or zero3):
        raise UserInputError(
            f"accelerate launch: {mode} is not supported by `unlearn` yet"
            + (" for masked runs (the mask indexes whole parameters; this mode gives the optimizer flat shards)"
               if masked else " (saving needs whole weights on the main process)")
            + "; launch with configs/accelerate/ddp.yaml instead (see docs/distributed.md)")
