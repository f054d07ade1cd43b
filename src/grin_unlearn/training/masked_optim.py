"""Exact masked fine-tuning: only selected weights move, bit for bit.

Zeroing the gradient of unselected weights is not enough: decoupled weight decay (AdamW,
Loshchilov & Hutter, arXiv 1711.05101) shrinks *every* weight, ``θ ← θ − η·λ·θ``, and so moves
unselected weights anyway. Here:

* tensors with no selected entry are frozen (``requires_grad=False``) before the optimizer is built,
  so they get no gradient and no optimizer state;
* a gradient hook zeroes unselected entries, so gradient clipping sees only selected gradients;
* :class:`MaskedAdamW` keeps Adam's moments only for the selected entries (``m, v ∈ R^k`` for a tensor
  with ``k`` selected entries) and applies the update and the weight decay to those entries alone:

      g = ∇θ[M];  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
      θ[M] ← θ[M] − η·( m̂ / (√v̂ + ε) + λ·θ[M] ),   m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)

  Unselected entries are never written, so they stay bit-identical.

FSDP2 (``DTensor`` parameters sharded by rows): each process keeps its rows of each mask and steps its
own shard (:func:`~grin_unlearn.sharding.local`): the update is elementwise, so the shards together
make exactly the single-process step, with moments for this process's selected entries only.
"""

from __future__ import annotations

import torch

from ..sharding import any_selected, is_sharded, local


def freeze_unselected(params: dict[str, torch.nn.Parameter], masks: dict[str, torch.Tensor],
                      all_params: dict[str, torch.nn.Parameter]) -> dict[str, torch.nn.Parameter]:
    """Set ``requires_grad`` on exactly the tensors with at least one selected entry; return those."""
    trainable = {}
    for name, param in all_params.items():
        mask = masks.get(name)
        keep = mask is not None and any_selected(mask)  # over all shards: every process freezes alike
        param.requires_grad_(keep)
        if keep:
            trainable[name] = param
    return trainable


def register_gradient_masks(trainable: dict[str, torch.nn.Parameter], masks: dict[str, torch.Tensor]) -> list:
    """Hooks that zero the gradient of unselected entries (so clipping norms count selected ones only)."""
    handles = []
    for name, param in trainable.items():
        mask = local(masks[name]).to(param.device)
        if bool(mask.all()):
            continue
        if is_sharded(param):  # FSDP2 runs post-accumulate hooks on the sharded .grad after its reduce-scatter
            handles.append(param.register_post_accumulate_grad_hook(
                lambda p, m=mask: local(p.grad).masked_fill_(~m, 0)))
        else:
            handles.append(param.register_hook(lambda grad, m=mask: grad.masked_fill(~m, 0)))
    return handles


class MaskedAdamW(torch.optim.Optimizer):
    """AdamW restricted to a boolean mask per parameter (formula in the module docstring).

    ``masks`` maps each parameter object to its mask (same shape). State per parameter: ``step``,
    ``exp_avg`` and ``exp_avg_sq`` of shape ``(k,)`` in fp32, where ``k`` is the mask's count
    (this process's rows of it for a sharded parameter).
    """

    def __init__(self, params, masks: dict[torch.nn.Parameter, torch.Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.masks = {param: local(mask).to(param.device, torch.bool) for param, mask in masks.items()}

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
            state = {k: v.clone() if k == "step" else v.to(param.device, copy=True) for k, v in saved[param_id].items()}
            selected = int(self.masks[param].sum())
            if state["exp_avg"].numel() != selected:
                raise ValueError(f"optimizer state holds {state['exp_avg'].numel()} moments for a parameter whose "
                                 f"mask selects {selected} weights: it was saved with another mask")
            self.state[param] = state

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                mask = self.masks[param]
                state = self.state[param]
                data = local(param)  # the parameter, or this process's shard of it (a view)
                grad = local(param.grad).masked_select(mask).float()  # (k,)
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(grad)
                    state["exp_avg_sq"] = torch.zeros_like(grad)
                state["step"] += 1
                step = state["step"].item()
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = (exp_avg_sq / (1 - beta2 ** step)).sqrt_().add_(group["eps"])
                selected = data.masked_select(mask).float()
                update = (exp_avg / (1 - beta1 ** step)) / denom + group["weight_decay"] * selected
                data.masked_scatter_(mask, (selected - group["lr"] * update).to(data.dtype))
        return loss


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in the optimizer's per-parameter state tensors (masks counted when masked)."""
    total = 0
    for state in optimizer.state.values():
        total += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    for mask in getattr(optimizer, "masks", {}).values():
        total += mask.numel() * mask.element_size()
    return total
