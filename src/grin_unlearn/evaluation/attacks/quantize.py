"""Quantization attack: weight-only round-to-nearest (RTN) quantization, then dequantization.

Zhang et al., "Catastrophic Failure of LLM Unlearning via Quantization" (ICLR 2025, arXiv 2410.16454):
an unlearned model whose weights moved less than half a quantization step from the target's maps to
the target's quantized weights, so quantizing it brings the forgotten knowledge back (on average 83 %
of it at 4 bits in their study, against 21 % in full precision). Evaluating the dequantized model
tells forgetting from hiding.

RTN, asymmetric with a zero point, per group of ``g`` consecutive input weights of one output row
(``g = None``: the whole row, i.e. per output channel). For a group ``w`` and ``b`` bits:

    s = (max w − min w) / (2^b − 1),   z = round(−min w / s),
    q = clamp(round(w / s) + z, 0, 2^b − 1),   ŵ = (q − z) · s,

so ``|ŵ − w| ≤ s / 2`` for every weight (a group with ``max w = min w`` is kept as it is). ``b = 16``
casts to bfloat16 and back (``16-bit`` in the paper's tables is the unquantized half-precision model).
The model keeps its dtype and architecture, so the attacked model is saved and loaded as any other
folder. Quantized by default: every 2-D weight inside the transformer blocks (the layers RTN, GPTQ
and AWQ quantize; embeddings and lm_head stay in full precision), the eligible set of
:func:`~grin_unlearn.scoring.eligible_parameters`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import UserInputError
from ...scoring import eligible_parameters

SUPPORTED_BITS = (2, 3, 4, 8, 16)


@dataclass(frozen=True)
class QuantizeConfig:
    """Weight-only RTN: ``bits`` per weight, groups of ``group_size`` input weights (None: per output channel)."""

    bits: int = 4
    group_size: int | None = 32

    def __post_init__(self):
        if self.bits not in SUPPORTED_BITS:
            raise UserInputError(f"--bits: expected one of {', '.join(map(str, SUPPORTED_BITS))}, got {self.bits!r}")
        if self.group_size is not None and (isinstance(self.group_size, bool) or self.group_size <= 0):
            raise UserInputError(f"--group-size: expected a positive integer or none, got {self.group_size!r}")

    @property
    def label(self) -> str:
        return "16-bit" if self.bits == 16 else f"{self.bits}-bit RTN, " + (
            f"groups of {self.group_size}" if self.group_size else "per channel")


def rtn(weight: torch.Tensor, bits: int, group_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ŵ, s)`` of a 2-D ``weight`` (out, in) under RTN (module docstring): the dequantized weight in
    ``weight``'s dtype and each weight's group step ``s`` in fp32 (0 for 16-bit and constant groups).

    The arithmetic is fp32. ``group_size`` must divide ``in``; None quantizes each row as one group.
    """
    if weight.dim() != 2:
        raise UserInputError(f"quantize: expected a 2-D weight, got shape {tuple(weight.shape)}")
    if bits == 16:
        return weight.to(torch.bfloat16).to(weight.dtype), torch.zeros_like(weight, dtype=torch.float32)
    rows, cols = weight.shape
    size = group_size or cols
    if cols % size:
        raise UserInputError(f"--group-size {size}: does not divide the input width {cols} of a {rows}x{cols} weight")
    w = weight.detach().float().reshape(rows, cols // size, size)  # (out, groups, g)
    low, high = w.amin(dim=-1, keepdim=True), w.amax(dim=-1, keepdim=True)  # (out, groups, 1)
    levels = 2 ** bits - 1
    step = (high - low) / levels
    flat = step == 0  # a constant group is exact already
    scale = torch.where(flat, torch.ones_like(step), step)
    zero = torch.round(-low / scale)
    q = torch.clamp(torch.round(w / scale) + zero, 0, levels)
    out = torch.where(flat, w, (q - zero) * scale)
    return out.reshape(rows, cols).to(weight.dtype), step.expand_as(w).reshape(rows, cols)


def rtn_dequantized(weight: torch.Tensor, bits: int, group_size: int | None) -> torch.Tensor:
    """``ŵ`` of :func:`rtn`."""
    return rtn(weight, bits, group_size)[0]


@torch.no_grad()
def quantize_model(model, config: QuantizeConfig, include: list[str] | None = None) -> dict:
    """Replace every quantized weight of ``model`` by its RTN dequantization, in place; returns a report
    (tensors, weights, the largest ``|ŵ − w| / s`` seen, which RTN keeps ≤ 0.5)."""
    params = eligible_parameters(model, include)
    weights, worst = 0, 0.0
    for name, param in params.items():
        if param.dim() != 2:
            continue
        new, steps = rtn(param.data, config.bits, config.group_size)
        moved = (new.float() - param.data.float()).abs()
        ratio = moved[steps > 0] / steps[steps > 0]
        worst = max(worst, float(ratio.max()) if ratio.numel() else 0.0)
        param.data.copy_(new)
        weights += param.numel()
    return {"attack": "quantize", "bits": config.bits, "group_size": config.group_size, "label": config.label,
            "tensors": len(params), "weights": weights, "max_error_in_steps": worst}


def changed_buckets(model_a, model_b, config: QuantizeConfig, masks: dict[str, torch.Tensor] | None = None,
                    include: list[str] | None = None) -> dict:
    """How many quantized weights land in a different RTN bucket in ``model_a`` than in ``model_b``
    (optionally only the entries selected by ``masks``): the share that quantization cannot send back
    to ``model_b``'s values (Zhang et al.'s mechanism). Each model is bucketed with its own groups, and
    a weight counts as changed when its two dequantized values differ by more than half of ``model_b``'s
    step: a different level of the grid. A group whose range moved a little shifts every level by a
    little; that is the same bucket, not a change (comparing the values exactly counted it as one)."""
    params_a, params_b = eligible_parameters(model_a, include), eligible_parameters(model_b, include)
    differ = total = 0
    for name, a in params_a.items():
        if a.dim() != 2 or name not in params_b:
            continue
        qa = rtn_dequantized(a.data, config.bits, config.group_size)
        qb, step_b = rtn(params_b[name].data, config.bits, config.group_size)
        keep = masks[name].to(a.device) if masks is not None and name in masks else None
        if masks is not None and keep is None:
            continue
        gap = (qa.float() - qb.float()).abs()
        diff = torch.where(step_b > 0, gap > 0.5 * step_b, gap > 0)  # 16-bit and constant groups: any change
        differ += int((diff[keep] if keep is not None else diff).sum())
        total += int(keep.sum()) if keep is not None else diff.numel()
    return {"weights": total, "changed": differ, "share": differ / total if total else 0.0}
