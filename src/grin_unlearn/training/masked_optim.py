"""Exact masked fine-tuning: only selected weights move, bit for bit.

Zeroing the gradient of unselected weights is not enough: decoupled weight decay (AdamW,
Loshchilov & Hutter, arXiv 1711.05101) shrinks *every* weight, ``θ ← θ − η·λ·θ``, and so moves
unselected weights anyway. :func:`make_masked_optimizer` sets up masked training on any model:

* tensors with no selected entry are frozen (``requires_grad=False``), so they get no gradient and
  no optimizer state;
* a gradient hook zeroes unselected entries of ``.grad`` in place, so gradient clipping sees only
  selected gradients;
* :class:`MaskedAdamW` keeps Adam's moments only for the selected entries (``m, v ∈ R^k`` for a tensor
  with ``k`` selected entries, flat indices ``I``) and runs torch's AdamW on those entries alone:

      g = ∇θ[I];  θ[I] ← θ[I]·(1 − η·λ)
      m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
      θ[I] ← θ[I] − η·m̂ / (√v̂ + ε),   m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)

  Unselected entries are never written, so they stay bit-identical.

How a step runs (the speed is measured in ``bench/bench_masked_training.py``): the flat indices ``I``
of each tensor are computed once (int32, 4 bytes per selected weight; the boolean mask is not kept).
Per tensor, ``g[I]`` and ``θ[I]`` are gathered into fp32 scratch buffers (``index_select``), torch's
fused AdamW kernel updates the ``k`` entries, and ``θ[I]`` is scattered back (``index_copy_``). A fully
selected fp32 tensor is updated in place with no gather. The scratch is two fp32 buffers of the
largest ``k``, shared by all tensors. Boolean ``masked_select`` / ``masked_scatter_`` and
``masked_fill`` are unvectorised on CPU and cost several times more than all of this.

FSDP2 (``DTensor`` parameters sharded by rows): each process keeps its rows of each mask and steps its
own shard (:func:`~grin_unlearn.parallel.sharding.local`): the update is elementwise, so the shards together
make exactly the single-process step, with moments for this process's selected entries only.
"""

from __future__ import annotations

import torch
from torch.optim.adamw import adamw

from ..errors import UserInputError
from ..masks import check_mask_matches
from ..parallel.sharding import any_selected, local

try:  # private in torch; without it, fall back to the plain (single-tensor) AdamW kernel
    from torch.optim.optimizer import _get_fused_kernels_supported_devices
except ImportError:  # pragma: no cover - older or trimmed torch builds
    def _get_fused_kernels_supported_devices() -> list[str]:
        return []

_INT_OF_WIDTH = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def make_masked_optimizer(model: torch.nn.Module, masks: dict[str, torch.Tensor], *, lr: float,
                          weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                          eps: float = 1e-8) -> "MaskedAdamW":
    """Freeze, hook and build the optimizer for training only the weights that ``masks`` select.

    ``masks`` maps parameter names (as in ``model.named_parameters()``) to boolean masks of the same
    shape, e.g. from :func:`grin_unlearn.masks.load_mask`; a parameter with no mask is frozen. Weight
    decay applies to selected entries of tensors with two or more dimensions (not to norms or biases).
    The returned optimizer works in any loop and in ``transformers.Trainer(optimizers=(optimizer,
    None))``; every unselected weight stays bit-identical. Call ``optimizer.remove_gradient_masks()``
    after training to drop the hooks (the frozen tensors stay frozen).
    """
    if not masks:
        raise UserInputError("masks: expected at least one mask tensor, got an empty dict")
    params = dict(model.named_parameters())
    check_mask_matches(masks, params)
    for name, mask in masks.items():
        if mask.dtype != torch.bool:
            raise UserInputError(f"masks[{name!r}]: expected a bool tensor, got {mask.dtype}")
    trainable = freeze_unselected(params, masks)
    if not trainable:
        raise UserInputError("masks: they select no weight (expected at least one True entry)")
    decay = [p for p in trainable.values() if p.ndim >= 2]
    no_decay = [p for p in trainable.values() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = MaskedAdamW([g for g in groups if g["params"]], {p: masks[n] for n, p in trainable.items()},
                            lr=lr, betas=betas, eps=eps)
    optimizer.gradient_hooks = register_gradient_masks(trainable, masks)
    return optimizer


def freeze_unselected(params: dict[str, torch.nn.Parameter],
                      masks: dict[str, torch.Tensor]) -> dict[str, torch.nn.Parameter]:
    """Set ``requires_grad`` on exactly the tensors with at least one selected entry; return those."""
    trainable = {}
    for name, param in params.items():
        mask = masks.get(name)
        keep = mask is not None and any_selected(mask)  # over all shards: every process freezes alike
        param.requires_grad_(keep)
        if keep:
            trainable[name] = param
    return trainable


def register_gradient_masks(trainable: dict[str, torch.nn.Parameter], masks: dict[str, torch.Tensor]) -> list:
    """Hooks that zero the gradient of unselected entries (so clipping norms count selected ones only).

    Each runs in place on ``param.grad`` right after autograd accumulates into it, inside the same
    autograd node and so before DDP's reducer (a post-hook of that node) reads the gradient. In place
    matters: a hook that returned a new gradient allocated a full-size tensor per parameter and step,
    and those fresh pages cost more than the whole masked optimizer step on CPU."""
    handles = []
    for name, param in trainable.items():
        mask = local(masks[name]).to(param.device)  # this process's rows under FSDP2
        if bool(mask.all()):
            continue
        handles.append(param.register_post_accumulate_grad_hook(_GradientMask(mask)))
    return handles


class _GradientMask:
    """The hook of one parameter; follows the model to another device once (a Trainer may move it)."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask

    def __call__(self, param: torch.Tensor) -> None:
        if self.mask.device != param.grad.device:
            self.mask = self.mask.to(param.grad.device)
        zero_unselected_(local(param.grad), self.mask)


def zero_unselected_(grad: torch.Tensor, mask: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Set every unselected entry of ``grad`` to +0.0 in place, NaN and inf included; return ``grad``.

    Multiplies the bit pattern, read as integers, by the mask as 0/1 integers: exact, and several
    times faster on CPU than ``masked_fill_`` or a multiply by the bool mask (both take unvectorised
    paths). On CPU the mask is converted ``chunk`` entries at a time into one small buffer, so no
    full-size temporary is allocated (64 Ki entries, 256 KiB for fp32, stay in cache). A float multiply
    would turn an unselected inf into NaN.
    """
    if not grad.is_contiguous():
        return grad.copy_(zero_unselected_(grad.contiguous(), mask, chunk))
    bits = grad.view(_INT_OF_WIDTH[grad.element_size()]).view(-1)  # (n,)
    flat_mask = mask.reshape(-1)
    step = chunk if grad.device.type == "cpu" else bits.numel()
    buffer = torch.empty(min(step, bits.numel()), dtype=bits.dtype, device=bits.device)
    for start in range(0, bits.numel(), step):
        part = bits[start:start + step]
        ones = buffer[:part.numel()]
        ones.copy_(flat_mask[start:start + step])
        part.mul_(ones)
    return grad


class MaskedAdamW(torch.optim.Optimizer):
    """AdamW restricted to a boolean mask per parameter (formula and layout in the module docstring).

    ``masks`` maps each parameter object to its mask (same shape). State per parameter: ``step``,
    ``exp_avg`` and ``exp_avg_sq`` of shape ``(k,)`` in fp32, where ``k`` is the mask's count; the
    moments are fp32 whatever the parameter's dtype, and the update is computed in fp32.
    """

    def __init__(self, params, masks: dict[torch.nn.Parameter, torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.gradient_hooks: list = []
        self.indices: dict[torch.nn.Parameter, torch.Tensor | None] = {}  # None: every entry selected
        for group in self.param_groups:
            for param in group["params"]:
                data = local(param)  # the whole tensor, or this process's rows under FSDP2
                if not data.is_contiguous():
                    raise ValueError("MaskedAdamW: parameters must be contiguous (it indexes their flat view)")
                mask = local(masks[param]).to(param.device, torch.bool).reshape(-1)
                if bool(mask.all()):
                    self.indices[param] = None
                else:
                    index = mask.nonzero().squeeze(1)  # (k,) int64, ascending
                    self.indices[param] = index.int() if data.numel() < 2**31 else index
        self._scratch: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def selected(self, param: torch.nn.Parameter) -> int:
        """``k``: how many entries of ``param`` the optimizer updates."""
        index = self.indices[param]
        return local(param).numel() if index is None else index.numel()

    def remove_gradient_masks(self) -> None:
        """Remove the gradient hooks :func:`make_masked_optimizer` registered."""
        for handle in self.gradient_hooks:
            handle.remove()
        self.gradient_hooks = []

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the state as saved: torch would cast the moments to the parameter dtype (bf16 on a
        bf16 run), but they are fp32 by design, and a resumed run must continue bit-identically.
        The masks are not in the state dict: the caller rebuilds them from the same mask/seed."""
        saved = state_dict["state"]
        ids = [i for group in state_dict["param_groups"] for i in group["params"]]
        super().load_state_dict(state_dict)
        params = [p for group in self.param_groups for p in group["params"]]
        for param_id, param in zip(ids, params):
            if param_id not in saved:
                continue
            state = {k: v.to(param.device, copy=True) for k, v in saved[param_id].items()}
            selected = self.selected(param)
            if state["exp_avg"].numel() != selected:
                raise ValueError(f"optimizer state holds {state['exp_avg'].numel()} moments for a parameter whose "
                                 f"mask selects {selected} weights: it was saved with another mask")
            self.state[param] = state

    def _buffers(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Two fp32 scratch buffers (values, gradients) as long as the largest ``k``, made once."""
        if device not in self._scratch:
            largest = max((self.selected(p) for g in self.param_groups for p in g["params"] if p.device == device),
                          default=0)
            self._scratch[device] = (torch.empty(largest, device=device), torch.empty(largest, device=device))
        return self._scratch[device]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None or self.selected(param) == 0:
                    continue
                index, k = self.indices[param], self.selected(param)
                if index is not None and index.device != param.device:  # the model was moved after __init__
                    index = self.indices[param] = index.to(param.device)
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32, device=param.device)
                    state["exp_avg"] = torch.zeros(k, dtype=torch.float32, device=param.device)
                    state["exp_avg_sq"] = torch.zeros(k, dtype=torch.float32, device=param.device)
                flat, grad = local(param).view(-1), local(param.grad).reshape(-1)  # (n,) this process's entries
                in_place = index is None and param.dtype == torch.float32
                if in_place:
                    values, grads = flat, grad
                else:
                    values_buf, grads_buf = self._buffers(param.device)
                    values, grads = values_buf[:k], grads_buf[:k]  # (k,) fp32
                    if index is None:
                        values.copy_(flat)
                        grads.copy_(grad)
                    else:
                        _gather(flat, index, values)
                        _gather(grad, index, grads)
                adamw([values], [grads], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
                      foreach=False, fused=param.device.type in _get_fused_kernels_supported_devices(),
                      amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
                      eps=group["eps"], maximize=False)
                if not in_place:
                    if index is None:
                        flat.copy_(values)
                    else:
                        flat.index_copy_(0, index.long(), values.to(param.dtype))
        return loss


def _gather(source: torch.Tensor, index: torch.Tensor, out: torch.Tensor) -> None:
    """``out[:] = source[index]`` in fp32, without a temporary when ``source`` is fp32 already."""
    if source.dtype == out.dtype:
        torch.index_select(source, 0, index, out=out)
    else:
        out.copy_(source.index_select(0, index))
