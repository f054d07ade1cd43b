"""Process-group helpers: who writes files, barriers, all-reduce of accumulators, launch-mode checks.

Everything here is a no-op (or the single-process answer) when ``torch.distributed`` is not
initialised, so the library runs the same code in one process and under ``torchrun`` /
``accelerate launch``. See ``docs/distributed.md``.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..errors import UserInputError


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


def fsdp_version() -> int | None:
    """The FSDP version ``accelerate launch`` asked for (``ACCELERATE_USE_FSDP``, ``FSDP_VERSION``); None without FSDP.

    ``configs/accelerate/fsdp2.yaml`` sets both; under ``torchrun`` set them by hand
    (``ACCELERATE_USE_FSDP=true FSDP_VERSION=2``).
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return None
    version = os.environ.get("FSDP_VERSION", "1")
    return int(version) if version.isdigit() else None


def fsdp2_requested() -> bool:
    """True when the launch asks for FSDP2 and runs more than one process (one process needs no sharding)."""
    return fsdp_version() == 2 and int(os.environ.get("WORLD_SIZE", "1")) > 1


def check_launch_mode(masked: bool) -> None:
    """Refuse, before any scoring, the ``accelerate launch`` modes this pipeline cannot run correctly.

    FSDP2 (``fully_shard``: parameters stay whole-shaped ``DTensor``s, sharded by rows) is supported,
    masked or not: the pipeline shards the model itself (:mod:`grin_unlearn.parallel.sharding`). FSDP 1 and
    DeepSpeed hand the optimizer flat shards (FSDP 1's flat parameters, ZeRO's fp32 partitions) that a
    per-parameter mask cannot index, so they are refused for masked runs; FSDP 1 and ZeRO-3 hold only a
    shard of each weight, so ``model.save_pretrained`` would not see whole weights either, masked or not.
    """
    env = os.environ
    version = fsdp_version()
    fsdp1 = env.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and version != 2
    deepspeed = env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    zero3 = deepspeed and env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    mode = (f"FSDP version {env.get('FSDP_VERSION', '1')}" if fsdp1 else "DeepSpeed ZeRO-3" if zero3
            else "DeepSpeed" if deepspeed else None)
    if mode is not None and (masked or fsdp1 or zero3):
        raise UserInputError(
            f"accelerate launch: {mode} is not supported by `unlearn`"
            + (" for masked runs (the mask indexes whole parameters; this mode gives the optimizer flat shards)"
               if masked else " (saving needs whole weights on the main process)")
            + "; to shard the model, launch with configs/accelerate/fsdp2.yaml (FSDP2), or use "
            "configs/accelerate/ddp.yaml when one device holds it (see docs/distributed.md)")
    if version == 2:
        try:
            from torch.distributed.fsdp import fully_shard  # noqa: F401  (public since torch 2.6)
        except ImportError:
            raise UserInputError(f"accelerate launch: FSDP2 needs torch >= 2.6 (installed: {torch.__version__})") from None


def init_from_launcher() -> torch.device | None:
    """Join the process group of ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE > 1``); this process's device.

    Through accelerate's ``PartialState`` (NCCL and one GPU per process, or gloo on CPUs), the same
    state ``TrainingArguments`` initialises in ``unlearn``. Returns None for a single process.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    cuda = torch.cuda.is_available()
    return PartialState(cpu=not cuda, backend=None if cuda else "gloo").device
