"""FSDP2 sharding: wrapping a model with ``fully_shard``, local shards, their global positions, gathering.

Under FSDP2 (``torch.distributed.fsdp.fully_shard``) every parameter is a ``DTensor`` with the full
logical shape, placed ``Shard(0)`` on a 1-D mesh over all processes: process ``r`` of ``W`` holds rows
``[r·c, min((r+1)·c, R))`` of a tensor with ``R`` rows, ``c = ceil(R / W)`` (``torch.chunk``'s rule, so
the last processes may hold no row). A shard is therefore one contiguous range of the row-major
flattened tensor, and the shards of one tensor follow each other in rank order. The GRIN steps use that:

* scores, gradients and masks are ``DTensor``s with the parameter's placement (:func:`zeros_like_shard`,
  :func:`shard_of`), so elementwise scorers run on the local shards unchanged;
* global counts and orders are built from per-shard counts (:func:`flat_range`, :func:`all_gather_counts`);
* only saving sees whole tensors (:func:`full_masks`, :func:`full_state_dict`), on the main process.

Every function here is the plain single-process answer on ordinary tensors. See ``docs/distributed.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist

from .distributed import rank_and_world_size

try:  # public since torch 2.5; older torch has no FSDP2 and nothing here is ever a DTensor
    from torch.distributed.tensor import DTensor, Shard
except ImportError:  # pragma: no cover - torch < 2.5
    DTensor, Shard = None, None


def is_sharded(tensor) -> bool:
    """True for a ``DTensor`` (an FSDP2 parameter, or a score, gradient or mask sharded like one)."""
    return DTensor is not None and isinstance(tensor, DTensor)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a ``DTensor`` (a view: in-place writes change the parameter); else ``tensor``."""
    return tensor.to_local() if is_sharded(tensor) else tensor


def check_layout(name: str, tensor: torch.Tensor) -> None:
    """Raise unless ``tensor`` is ``Shard(0)`` on a 1-D mesh over every process (what :func:`shard_model` makes)."""
    world = rank_and_world_size()[1]
    mesh = tensor.device_mesh
    if mesh.ndim != 1 or mesh.size() != world or tuple(tensor.placements) != (Shard(0),):
        raise ValueError(f"{name}: expected a DTensor placed Shard(0) on a 1-D mesh of all {world} processes, "
                         f"got {tuple(tensor.placements)} on {mesh}")


def flat_range(tensor: torch.Tensor) -> tuple[int, int]:
    """``(start, stop)`` of this process's shard in the row-major flattened full tensor.

    ``(0, numel)`` for an ordinary tensor. For ``Shard(0)`` the rows ``[r·c, min((r+1)·c, R))``,
    ``c = ceil(R / W)``; checked against the local shard's shape.
    """
    if not is_sharded(tensor):
        return 0, tensor.numel()
    rank, world = rank_and_world_size()
    rows = tensor.shape[0]
    per_rank = -(-rows // world)
    first, last = min(rank * per_rank, rows), min((rank + 1) * per_rank, rows)
    row_size = tensor.numel() // rows if rows else 0
    if local(tensor).numel() != (last - first) * row_size:
        raise ValueError(f"shard of shape {tuple(local(tensor).shape)} is not rows {first}:{last} of {tuple(tensor.shape)}")
    return first * row_size, last * row_size


def shard_like(local_tensor: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``local_tensor`` (this process's shard) as a ``DTensor`` placed like ``reference``; as is otherwise."""
    if not is_sharded(reference):
        return local_tensor
    return DTensor.from_local(local_tensor, reference.device_mesh, reference.placements,
                              shape=reference.shape, stride=reference.stride(), run_check=False)


def zeros_like_shard(reference: torch.Tensor, dtype: torch.dtype, device=None) -> torch.Tensor:
    """Zeros of ``reference``'s shape placed like it (only the local shard is allocated)."""
    piece = local(reference)
    return shard_like(torch.zeros(piece.shape, dtype=dtype, device=device or piece.device), reference)


def shard_of(full: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """This process's rows of a full tensor (e.g. a loaded mask), placed like ``reference``; as is otherwise."""
    if not is_sharded(reference):
        return full
    start, stop = flat_range(reference)
    piece = full.reshape(-1)[start:stop].reshape(local(reference).shape)
    return shard_like(piece.to(local(reference).device).contiguous(), reference)


def global_count(masks: dict[str, torch.Tensor]) -> tuple[int, int]:
    """``(selected, total)`` over all masks and all processes (a mask's ``numel`` is already global)."""
    selected = sum(int(local(m).count_nonzero()) for m in masks.values())
    if any(is_sharded(m) for m in masks.values()):
        selected = int(all_reduce_sum(np.array([selected], dtype=np.int64))[0])
    return selected, sum(m.numel() for m in masks.values())


def any_selected(mask: torch.Tensor) -> bool:
    """``mask.any()`` over the whole tensor (every process gets the same answer for a sharded mask)."""
    found = bool(local(mask).any())
    if is_sharded(mask):
        found = bool(all_reduce_sum(np.array([int(found)], dtype=np.int64))[0])
    return found


def all_reduce_sum(values: np.ndarray) -> np.ndarray:
    """Elementwise sum of an int64/float64 array over all processes (staged through the GPU under NCCL)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    if dist.get_backend() == "nccl":
        staged = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(staged)
        return staged.cpu().numpy()
    dist.all_reduce(tensor)
    return tensor.numpy()


def all_reduce_max(value: float) -> float:
    """The largest ``value`` over all processes (itself outside ``torch.distributed``)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def all_gather_counts(counts: np.ndarray) -> np.ndarray:
    """``(W, n)`` int64: row ``r`` is process ``r``'s ``counts`` (``(1, n)`` outside ``torch.distributed``)."""
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if not (dist.is_available() and dist.is_initialized()):
        return counts[None, :]
    world = dist.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    mine = torch.from_numpy(counts).to(device)
    rows = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(rows, mine)
    return torch.stack(rows).cpu().numpy()


def full_masks(masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Whole masks on the main process's CPU (``{}`` elsewhere) from sharded ones; as is when none is sharded.

    An all-gather per tensor, so every process must call it; only the main process keeps the result.
    """
    if not any(is_sharded(m) for m in masks.values()):
        return masks
    main = rank_and_world_size()[0] == 0
    gathered = {}
    for name, mask in masks.items():
        full = mask.full_tensor() if is_sharded(mask) else mask
        if main:
            gathered[name] = full.cpu()
    return gathered


def full_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's full state dict on the CPU of the main process (``{}`` elsewhere); collective.

    ``torch.distributed.checkpoint.state_dict.get_model_state_dict`` with ``full_state_dict`` and
    ``cpu_offload``: one tensor is gathered at a time, so no process holds the full model on its device.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def is_sharded_model(model) -> bool:
    """True when ``model`` has been wrapped by ``fully_shard`` (its parameters are ``DTensor``s)."""
    return any(is_sharded(p) for p in model.parameters())


def shard_model(model, device: torch.device | str | None = None):
    """Wrap ``model`` with FSDP2 in place: ``fully_shard`` on each transformer block, then on the root.

    The blocks are the modules whose class is in ``model._no_split_modules`` (what accelerate's
    ``TRANSFORMER_BASED_WRAP`` uses). ``MixedPrecisionPolicy(reduce_dtype=float32)``: gradients are
    reduce-scattered in fp32 whatever the weights' dtype. The mesh is every process on ``device``'s
    type (this process's device; default CUDA when available): ``fully_shard`` moves one block at a
    time there and keeps only this process's rows, so a model loaded on the CPU never needs to fit the
    device whole. Returns ``model`` (its class becomes ``FSDP<Class>``).

    The root is resharded after forward too (FSDP2's default keeps its parameters, the embeddings and
    the head, gathered until backward): so between passes every parameter registered on the model is
    its sharded ``DTensor``, the object that ``requires_grad``, hooks, noise and the optimizer must
    see. The default would leave the gathered copies registered after a no-grad forward (reference
    log-probs), and a flag set on those is lost at the next reshard. Cost: the root's parameters are
    gathered once more per backward.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    device_type = torch.device(device).type if device is not None else "cuda" if torch.cuda.is_available() else "cpu"
    mesh = init_device_mesh(device_type, (rank_and_world_size()[1],))
    block_names = set(getattr(model, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in block_names]
    if not blocks:
        raise ValueError(f"{type(model).__name__} names no transformer block class in _no_split_modules, "
                         "so FSDP2 would shard it as one unit")
    policy = MixedPrecisionPolicy(reduce_dtype=torch.float32)
    for block in blocks:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=True)
    return model


@contextlib.contextmanager
def summed_gradients(model) -> Iterator[None]:
    """FSDP2 reduce-scatters the SUM of the processes' gradients (not their mean) inside the block.

    ``set_gradient_divide_factor(1.0)`` with sum-only collectives: ``grad = Σ_r grad_r`` exactly (no
    division or pre-scaling). On exit the default is restored: the mean, as in training.
    """
    from torch.distributed.fsdp import FSDPModule

    world = rank_and_world_size()[1]
    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for module in modules:
        module.set_gradient_divide_factor(1.0)
        module.set_force_sum_reduction_for_comms(True)
    try:
        yield
    finally:
        for module in modules:
            module.set_gradient_divide_factor(float(world))
            module.set_force_sum_reduction_for_comms(False)
