"""A key/value cache for greedy decoding that writes each new token in place instead of concatenating.

``transformers``' ``DynamicCache`` appends a step's keys and values with ``torch.cat``, which copies the
whole cache of every layer at every step: ``O(L²)`` bytes over a generation of ``L`` tokens, and on a
small model on a CPU most of the decoding time (``bench/bench_decoding.py`` times both). :class:`PreallocatedCache` holds one buffer of ``capacity`` positions per layer and
hands attention a view of the filled part, so a step writes only its own positions; the attention
sees the same keys and values, so the tokens are the same.

It is a ``DynamicCache`` to the model on both ends of the transformers range we support: 5.x builds a
cache from layer objects (``layer_class_to_replicate``), 4.x keeps ``key_cache``/``value_cache`` lists;
each gets the same three operations (append, read the filled view, keep some batch rows).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

try:  # transformers >= 4.56: caches are lists of layer objects
    from transformers.cache_utils import DynamicLayer
except ImportError:  # pragma: no cover - exercised by the floor environment (transformers 4.45)
    DynamicLayer = None


def _append(buffer: torch.Tensor | None, length: int, new: torch.Tensor, capacity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Write ``new`` (B, H, t, D) at positions ``length..length+t`` of ``buffer`` (B, H, capacity, D),
    growing it when full; returns the buffer and the view of its ``length + t`` filled positions."""
    end = length + new.shape[-2]
    if buffer is None or end > buffer.shape[-2]:
        grown = new.new_empty(new.shape[0], new.shape[1], max(end, capacity, 2 * length), new.shape[3])
        if buffer is not None:
            grown[:, :, :length] = buffer[:, :, :length]
        buffer = grown
    buffer[:, :, length:end] = new
    return buffer, buffer[:, :, :end]


def _keep_rows(buffer: torch.Tensor, length: int, indices: torch.Tensor) -> torch.Tensor:
    """``buffer`` (B, H, capacity, D) with only the batch rows ``indices`` (ascending), compacted in
    place: the filled ``length`` positions of the kept rows move up, and the buffer becomes a view of
    its first ``len(indices)`` rows (no new buffer, and the empty positions are not copied)."""
    buffer[:len(indices), :, :length] = buffer[indices, :, :length]
    return buffer[:len(indices)]


if DynamicLayer is not None:

    class _PreallocatedLayer(DynamicLayer):
        """A ``DynamicLayer`` whose ``keys``/``values`` are views of preallocated buffers."""

        capacity = 0  # set per cache by :class:`PreallocatedCache`

        def __init__(self):
            super().__init__()
            self._key_buffer = self._value_buffer = None

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            length = self.get_seq_length()
            self._key_buffer, self.keys = _append(self._key_buffer, length, key_states, self.capacity)
            self._value_buffer, self.values = _append(self._value_buffer, length, value_states, self.capacity)
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            length = self.get_seq_length()
            if length > 0:
                self._key_buffer = _keep_rows(self._key_buffer, length, indices)
                self._value_buffer = _keep_rows(self._value_buffer, length, indices)
                self.keys, self.values = self._key_buffer[:, :, :length], self._value_buffer[:, :, :length]


class PreallocatedCache(DynamicCache):
    """A ``DynamicCache`` whose layers write into buffers of ``capacity`` positions (grown if exceeded)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        if DynamicLayer is not None:
            self.layer_class_to_replicate = type("PreallocatedLayer", (_PreallocatedLayer,), {"capacity": capacity})
        else:
            self._key_buffers: list[torch.Tensor] = []
            self._value_buffers: list[torch.Tensor] = []

    if DynamicLayer is None:  # transformers 4.x: key_cache / value_cache lists

        def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
            if layer_idx == 0:
                self._seen_tokens += key_states.shape[-2]
            if len(self.key_cache) <= layer_idx:
                self.key_cache.append(None)
                self.value_cache.append(None)
                self._key_buffers.append(None)
                self._value_buffers.append(None)
            length = self.get_seq_length(layer_idx)
            self._key_buffers[layer_idx], self.key_cache[layer_idx] = _append(
                self._key_buffers[layer_idx], length, key_states, self.capacity)
            self._value_buffers[layer_idx], self.value_cache[layer_idx] = _append(
                self._value_buffers[layer_idx], length, value_states, self.capacity)
            return self.key_cache[layer_idx], self.value_cache[layer_idx]

        def get_seq_length(self, layer_idx: int | None = 0) -> int:
            if len(self.key_cache) <= layer_idx or self.key_cache[layer_idx] is None:
                return 0
            return self.key_cache[layer_idx].shape[-2]

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            for layer, keys in enumerate(self.key_cache):
                length = keys.shape[-2]
                self._key_buffers[layer] = _keep_rows(self._key_buffers[layer], length, indices)
                self._value_buffers[layer] = _keep_rows(self._value_buffers[layer], length, indices)
                self.key_cache[layer] = self._key_buffers[layer][:, :, :length]
                self.value_cache[layer] = self._value_buffers[layer][:, :, :length]
