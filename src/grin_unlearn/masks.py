"""Selection masks as artifacts: save/load (safetensors), checks against a model, density per module.

File format (``mask.safetensors``):

* one tensor per masked parameter, under the parameter's name: ``bool`` of the parameter's shape
  (``packed=False``) or ``uint8`` bits packed 8 to a byte, most significant bit first, over the
  row-major flattened mask, zero-padded to a whole byte (``packed=True``; like ``numpy.packbits``);
* safetensors metadata ``"grin_unlearn"``: the caller's ``metadata`` dict as a JSON string;
* safetensors metadata ``"grin_unlearn_mask"``: JSON ``{"format_version", "packed", "shapes"}``.

No pickle anywhere; the file is written atomically.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from .errors import UserInputError
from .io_utils import atomic_write_bytes, atomic_write_json, canonical_safetensors
from .models import BLOCK_PATTERN

METADATA_KEY = "grin_unlearn"
FORMAT_KEY = "grin_unlearn_mask"
FORMAT_VERSION = 1

_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)  # MSB first


def save_mask(path: str | Path, masks: dict[str, torch.Tensor], metadata: dict, packed: bool = True) -> Path:
    """Write ``masks`` (name -> bool tensor) and JSON-serialisable ``metadata`` to ``path`` atomically."""
    if not masks:
        raise UserInputError("masks: expected at least one mask tensor, got an empty dict")
    try:
        metadata_json = json.dumps(metadata)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"metadata: expected a JSON-serialisable dict ({err})") from None
    tensors, shapes = {}, {}
    for name, mask in masks.items():
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise UserInputError(f"masks[{name!r}]: expected a bool tensor, got {getattr(mask, 'dtype', type(mask))}")
        mask = mask.detach().cpu().contiguous()
        tensors[name] = pack_bits(mask) if packed else mask
        shapes[name] = list(mask.shape)
    header = {"format_version": FORMAT_VERSION, "packed": bool(packed), "shapes": shapes}
    data = st_save(tensors, metadata={METADATA_KEY: metadata_json, FORMAT_KEY: json.dumps(header)})
    return atomic_write_bytes(path, canonical_safetensors(data))  # the same mask, the same bytes


def save_mask_with_report(path: str | Path, masks: dict[str, torch.Tensor], metadata: dict,
                          title: str | None = None) -> dict:
    """:func:`save_mask` plus ``density.json`` and ``density.png`` beside it; returns the density report."""
    path = Path(path)
    save_mask(path, masks, metadata=metadata)
    report = density_report(masks)
    atomic_write_json(path.parent / "density.json", report)
    plot_density(report, path.parent / "density.png", title=title)
    return report


def load_mask(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a file written by :func:`save_mask`; return ``(masks, metadata)``, masks on CPU."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"mask file: {path} does not exist (expected a .safetensors file from save_mask)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header_meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise UserInputError(f"mask file: {path} is not a safetensors file ({err})") from None
    if FORMAT_KEY not in header_meta or METADATA_KEY not in header_meta:
        raise UserInputError(f"mask file: {path} is a safetensors file but not a grin-unlearn mask")
    try:
        header = json.loads(header_meta[FORMAT_KEY])
        metadata = json.loads(header_meta[METADATA_KEY])
        shapes = {name: tuple(shape) for name, shape in header["shapes"].items()}
        packed = bool(header["packed"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise UserInputError(f"mask file: {path} has a malformed {FORMAT_KEY!r} header ({err})") from None
    if set(shapes) != set(tensors):
        raise UserInputError(f"mask file: {path} lists shapes for tensors it does not hold")
    masks = {}
    for name, shape in shapes.items():  # header order = save order
        stored = tensors[name]
        masks[name] = unpack_bits(stored, shape, name) if packed else stored
        if masks[name].dtype != torch.bool or tuple(masks[name].shape) != shape:
            raise UserInputError(f"mask file: {path} tensor {name!r} is not a bool mask of shape {shape}")
    return masks, metadata


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Bool tensor -> uint8 ``(ceil(n / 8),)``, 8 flags per byte, MSB first (``numpy.packbits``)."""
    flat = mask.reshape(-1)  # (n,)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    bits = flat.view(-1, 8).to(torch.uint8) * _BIT_WEIGHTS.to(flat.device)  # (n/8, 8), 0 or 2^j
    return bits.sum(dim=1, dtype=torch.uint8)  # (n/8,): disjoint bits, so the sum is an OR


def unpack_bits(packed: torch.Tensor, shape: tuple[int, ...], name: str = "mask") -> torch.Tensor:
    """Inverse of :func:`pack_bits`: uint8 ``(ceil(n / 8),)`` -> bool tensor of ``shape``."""
    n = 1
    for dim in shape:
        n *= dim
    if packed.dtype != torch.uint8 or packed.dim() != 1 or packed.numel() != (n + 7) // 8:
        raise UserInputError(f"mask file: tensor {name!r} is not {(n + 7) // 8} packed bytes for shape {shape}")
    bits = (packed.unsqueeze(1) & _BIT_WEIGHTS.to(packed.device)) != 0  # (n/8, 8)
    return bits.reshape(-1)[:n].reshape(shape)


def check_mask_matches(masks: dict[str, torch.Tensor], params: dict[str, torch.Tensor]) -> None:
    """Raise :class:`UserInputError` unless every mask names a parameter of the same shape."""
    missing = [name for name in masks if name not in params]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserInputError(f"mask: tensors missing from the model: {shown}")
    for name, mask in masks.items():
        if tuple(mask.shape) != tuple(params[name].shape):
            raise UserInputError(
                f"mask: tensor {name!r} has shape {tuple(mask.shape)} but the model's has {tuple(params[name].shape)}"
            )


# --- density -------------------------------------------------------------------------------------

_ATTENTION = re.compile(r"attn|attention|(^|_)(q|k|v|o|qkv|out)_proj$|^(query|key|value|query_key_value|w[qkvo])$")
_MLP = re.compile(r"mlp|feed_forward|ffn|^(gate|up|down)_proj$|^(fc\d|c_fc|w[123]|dense_h_to_4h|dense_4h_to_h)$")
_OTHER = re.compile(r"norm|^ln_|embed|^wte$|^wpe$|lm_head")


def module_type(name: str) -> str:
    """``model.layers.0.self_attn.q_proj.weight`` -> ``q_proj``; a non-weight keeps its suffix (``q_proj.bias``)."""
    parts = name.split(".")
    if len(parts) == 1:
        return name
    return parts[-2] if parts[-1] == "weight" else f"{parts[-2]}.{parts[-1]}"


def module_group(name: str) -> str:
    """Coarse group of a parameter: ``attention``, ``mlp`` or ``other`` (norms, embeddings, heads)."""
    leaf = module_type(name).split(".")[0]
    if _OTHER.search(leaf):
        return "other"
    parents = name.split(".")[:-2]
    # The parent module decides first: GPT-2's c_proj is in both attn and mlp.
    for part in reversed(parents):
        if _MLP.search(part):
            return "mlp"
        if _ATTENTION.search(part):
            return "attention"
    if _MLP.search(leaf):
        return "mlp"
    if _ATTENTION.search(leaf):
        return "attention"
    return "other"


def layer_index(name: str) -> int | None:
    """The transformer block index in a parameter name, or None outside the blocks."""
    found = BLOCK_PATTERN.search(name)
    return int(found.group(1)) if found else None


def density_report(masks: dict[str, torch.Tensor]) -> dict:
    """Selected count, total and density (selected / total) overall, per module type, group and layer.

    Returns ``{"overall": s, "by_module": {type: s}, "by_group": {group: s}, "by_layer": {i: s}}``
    with ``s = {"selected": int, "total": int, "density": float}``. ``by_layer`` holds only tensors
    inside transformer blocks, keyed by int block index in ascending order.
    """
    if not masks:
        raise UserInputError("masks: expected at least one mask tensor, got an empty dict")
    report: dict = {"overall": _stat(0, 0), "by_module": {}, "by_group": {}, "by_layer": {}}
    for name, mask in masks.items():
        selected, total = int(mask.count_nonzero()), mask.numel()
        _add(report, "overall", None, selected, total)
        _add(report, "by_module", module_type(name), selected, total)
        _add(report, "by_group", module_group(name), selected, total)
        layer = layer_index(name)
        if layer is not None:
            _add(report, "by_layer", layer, selected, total)
    report["by_layer"] = dict(sorted(report["by_layer"].items()))
    return report


def _stat(selected: int, total: int) -> dict:
    return {"selected": selected, "total": total, "density": selected / total if total else 0.0}


def _add(report: dict, section: str, key, selected: int, total: int) -> None:
    old = report[section] if key is None else report[section].get(key, _stat(0, 0))
    new = _stat(old["selected"] + selected, old["total"] + total)
    if key is None:
        report[section] = new
    else:
        report[section][key] = new


def plot_density(report: dict, path_png: str | Path, title: str | None = None) -> Path:
    """Bar charts of :func:`density_report`: density per module type (top), per layer (bottom)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 6))
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.1, hspace=0.75)  # fixed: a layout solver costs 0.1 s
    FigureCanvasAgg(fig)  # Agg without pyplot: no global backend state, works headless
    top, bottom = fig.subplots(2, 1)
    overall = report["overall"]["density"]
    modules = report["by_module"]
    top.bar(list(modules), [s["density"] for s in modules.values()], color="tab:blue")
    top.axhline(overall, color="gray", linestyle="--", label=f"overall {overall:.3g}")
    top.set_ylabel("selected fraction")
    top.set_title("per module type")
    top.tick_params(axis="x", labelrotation=45)
    top.legend(loc="upper right")
    layers = report["by_layer"]
    if layers:
        bottom.bar([str(i) for i in layers], [s["density"] for s in layers.values()], color="tab:orange")
        bottom.axhline(overall, color="gray", linestyle="--")
    else:
        bottom.text(0.5, 0.5, "no tensors inside transformer blocks", ha="center", va="center")
    bottom.set_xlabel("layer")
    bottom.set_ylabel("selected fraction")
    bottom.set_title("per layer")
    if title:
        fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path_png, buffer.getvalue())

