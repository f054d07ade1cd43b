"""Tests for grin_unlearn.masks: file round trips, model checks, density report and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from grin_unlearn.errors import UserInputError
from grin_unlearn.masks import (
    check_mask_matches,
    density_report,
    layer_index,
    load_mask,
    module_group,
    module_type,
    pack_bits,
    plot_density,
    save_mask,
    unpack_bits,
)


def _random_masks() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shapes = {"model.layers.0.self_attn.q_proj.weight": (13, 7), "model.layers.1.mlp.up_proj.weight": (5, 3, 2),
              "lm_head.weight": (1,), "empty": (0, 4)}
    return {name: torch.rand(shape, generator=gen) < 0.3 for name, shape in shapes.items()}


@pytest.mark.parametrize("packed", [True, False])
def test_round_trip(tmp_path, packed):
    masks = _random_masks()
    metadata = {"ratio": 0.3, "scorer": "grin", "nested": {"layers": [0, 1]}, "note": "héllo"}
    path = save_mask(tmp_path / "sub" / "mask.safetensors", masks, metadata, packed=packed)
    loaded, loaded_meta = load_mask(path)
    assert loaded_meta == metadata
    assert list(loaded) == list(masks)
    for name in masks:
        assert loaded[name].dtype == torch.bool and torch.equal(loaded[name], masks[name])
    assert not list(path.parent.glob(".*tmp"))  # no temporary file left behind


def test_packed_is_smaller_and_matches_numpy(tmp_path):
    mask = torch.rand(1000, 33, generator=torch.Generator().manual_seed(1)) < 0.5
    assert np.array_equal(pack_bits(mask).numpy(), np.packbits(mask.numpy().reshape(-1)))
    assert torch.equal(unpack_bits(pack_bits(mask), (1000, 33)), mask)
    small = save_mask(tmp_path / "p.safetensors", {"m": mask}, {}, packed=True).stat().st_size
    large = save_mask(tmp_path / "u.safetensors", {"m": mask}, {}, packed=False).stat().st_size
    assert small < large / 4


def _with_header_order(data: bytes, reverse: bool) -> bytes:
    """``data`` with its header's metadata entries and tensors written in (reversed) insertion order, as
    safetensors may write them in another process."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    metadata = header.pop("__metadata__")
    flip = (lambda items: list(items)[::-1]) if reverse else list
    text = json.dumps({"__metadata__": dict(flip(metadata.items())), **dict(flip(header.items()))},
                      separators=(",", ":")).encode()
    return len(text).to_bytes(8, "little") + text + data[8 + length:]


def test_a_mask_file_has_the_same_bytes_whatever_order_safetensors_writes_its_header_in(tmp_path):
    """safetensors writes metadata entries in a per-process hash order; the saved mask is canonical."""
    from safetensors.torch import save as st_save

    from grin_unlearn.io_utils import canonical_safetensors

    masks = _random_masks()
    data = st_save({name: pack_bits(mask) for name, mask in masks.items()}, metadata={"b": "2", "a": "1", "c": "3"})
    one, other = _with_header_order(data, reverse=False), _with_header_order(data, reverse=True)
    assert one != other
    canonical = canonical_safetensors(one)
    assert canonical == canonical_safetensors(other) == canonical_safetensors(canonical)
    path = tmp_path / "canonical.safetensors"
    path.write_bytes(canonical_safetensors(other))
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"a": "1", "b": "2", "c": "3"}
        for name, mask in masks.items():
            assert torch.equal(handle.get_tensor(name), pack_bits(mask))
    saved = save_mask(tmp_path / "mask.safetensors", masks, {"ratio": 0.3}).read_bytes()
    assert saved == canonical_safetensors(saved)  # save_mask writes the canonical form


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_mask(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"definitely not safetensors")
    with pytest.raises(UserInputError, match="not a safetensors file"):
        load_mask(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(UserInputError, match="not a grin-unlearn mask"):
        load_mask(tmp_path / "weights.safetensors")


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(UserInputError, match="metadata"):
        save_mask(tmp_path / "m.safetensors", {"a": torch.ones(2, dtype=torch.bool)}, {"x": object()})
    with pytest.raises(UserInputError, match="'a'.*bool"):
        save_mask(tmp_path / "m.safetensors", {"a": torch.ones(2)}, {})
    with pytest.raises(UserInputError, match="empty"):
        save_mask(tmp_path / "m.safetensors", {}, {})
    assert not (tmp_path / "m.safetensors").exists()


def test_check_mask_matches():
    params = {"a": torch.zeros(3, 4), "b": torch.zeros(5)}
    check_mask_matches({"a": torch.zeros(3, 4, dtype=torch.bool)}, params)
    with pytest.raises(UserInputError, match=r"'b'.*\(4,\).*\(5,\)"):
        check_mask_matches({"a": torch.zeros(3, 4, dtype=torch.bool), "b": torch.zeros(4, dtype=torch.bool)}, params)
    with pytest.raises(UserInputError, match="missing from the model: 'c'"):
        check_mask_matches({"c": torch.zeros(1, dtype=torch.bool)}, params)


def test_names_to_module_type_group_and_layer():
    cases = {
        "model.layers.3.self_attn.q_proj.weight": ("q_proj", "attention", 3),
        "model.layers.3.mlp.down_proj.weight": ("down_proj", "mlp", 3),
        "model.layers.0.post_attention_layernorm.weight": ("post_attention_layernorm", "other", 0),
        "transformer.h.11.attn.c_proj.weight": ("c_proj", "attention", 11),
        "transformer.h.11.mlp.c_proj.weight": ("c_proj", "mlp", 11),
        "model.decoder.layers.2.fc1.weight": ("fc1", "mlp", 2),
        "model.layers.1.self_attn.k_proj.bias": ("k_proj.bias", "attention", 1),
        "model.embed_tokens.weight": ("embed_tokens", "other", None),
        "lm_head.weight": ("lm_head", "other", None),
    }
    for name, (kind, group, layer) in cases.items():
        assert (module_type(name), module_group(name), layer_index(name)) == (kind, group, layer), name


def _hand_built() -> dict[str, torch.Tensor]:
    def mask(total: int, selected: int) -> torch.Tensor:
        m = torch.zeros(total, dtype=torch.bool)
        m[:selected] = True
        return m

    return {
        "model.layers.0.self_attn.q_proj.weight": mask(10, 5),
        "model.layers.0.mlp.up_proj.weight": mask(20, 2),
        "model.layers.1.self_attn.q_proj.weight": mask(10, 0),
        "model.layers.1.mlp.up_proj.weight": mask(20, 10),
        "lm_head.weight": mask(40, 4),
    }


def test_density_report_numbers():
    report = density_report(_hand_built())
    assert report["overall"] == {"selected": 21, "total": 100, "density": 0.21}
    assert report["by_module"]["q_proj"] == {"selected": 5, "total": 20, "density": 0.25}
    assert report["by_module"]["up_proj"] == {"selected": 12, "total": 40, "density": 0.3}
    assert report["by_module"]["lm_head"] == {"selected": 4, "total": 40, "density": 0.1}
    assert report["by_group"] == {
        "attention": {"selected": 5, "total": 20, "density": 0.25},
        "mlp": {"selected": 12, "total": 40, "density": 0.3},
        "other": {"selected": 4, "total": 40, "density": 0.1},
    }
    assert report["by_layer"] == {
        0: {"selected": 7, "total": 30, "density": pytest.approx(7 / 30)},
        1: {"selected": 10, "total": 30, "density": pytest.approx(1 / 3)},
    }
    json.dumps(report)  # serialisable as is


def test_plot_writes_png(tmp_path):
    path = plot_density(density_report(_hand_built()), tmp_path / "density.png", title="tiny")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    no_layers = density_report({"lm_head.weight": torch.ones(4, dtype=torch.bool)})
    assert plot_density(no_layers, tmp_path / "other.png").stat().st_size > 0
