"""A KV cache for long streams: layers grow in place instead of concatenating on every step.

transformers' `DynamicLayer` appends with `torch.cat`, which copies the whole cache each forward:
on a 6,000-token stream that copy costs more than the model itself. `GrowingLayer` keeps keys
and values in a buffer whose capacity doubles when full, so appending costs only the new tokens
and the amortised copy; `keys`/`values` are views of the filled part, so everything else of the
`DynamicLayer` contract (length, crop, masks) is unchanged.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

MIN_CAPACITY = 256


class GrowingLayer(DynamicLayer):
    _key_buffer: torch.Tensor | None = None
    _value_buffer: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = self.get_seq_length()
        m = n + key_states.shape[-2]
        if not self._fits(key_states, m):
            capacity = max(m, 2 * n, MIN_CAPACITY)
            self._key_buffer = self._grown(self.keys, key_states, n, capacity)
            self._value_buffer = self._grown(self.values, value_states, n, capacity)
        self._key_buffer[..., n:m, :] = key_states
        self._value_buffer[..., n:m, :] = value_states
        self.keys = self._key_buffer[..., :m, :]
        self.values = self._value_buffer[..., :m, :]
        return self.keys, self.values

    def _fits(self, new: torch.Tensor, length: int) -> bool:
        """The buffer has room and still backs `keys` (batch reshuffles replace `keys` outright)."""
        buffer = self._key_buffer
        if buffer is None or length > buffer.shape[-2] or buffer.shape[:-2] != new.shape[:-2]:
            return False
        shares = self.keys.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr()
        return self.get_seq_length() == 0 or shares

    def select_rows(self, rows: torch.Tensor, room: int) -> GrowingLayer:
        """A new layer holding only batch rows `rows`, with room for `room` more positions."""
        layer = GrowingLayer()
        n = self.get_seq_length()
        layer.lazy_initialization(self.keys, self.values)
        keys, values = self.keys[rows], self.values[rows]
        layer._key_buffer = self._grown(keys, keys, n, n + room)
        layer._value_buffer = self._grown(values, values, n, n + room)
        layer.keys, layer.values = layer._key_buffer[..., :n, :], layer._value_buffer[..., :n, :]
        return layer

    @staticmethod
    def _grown(old: torch.Tensor, new: torch.Tensor, n: int, capacity: int) -> torch.Tensor:
        buffer = new.new_empty((*new.shape[:-2], capacity, new.shape[-1]))
        if n:
            buffer[..., :n, :] = old
        return buffer


class StreamingCache(DynamicCache):
    """`DynamicCache` with growing full-attention layers (sliding-window layers are left as they are)."""

    def __init__(self, config):
        super().__init__(config=config)
        self.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in self.layers]

    @property
    def rows_selectable(self) -> bool:
        """Whether `select_rows` and `append_rows` can work on it (every layer a filled `GrowingLayer`)."""
        return all(type(layer) is GrowingLayer and layer.is_initialized for layer in self.layers)

    def select_rows(self, rows: torch.Tensor, room: int) -> StreamingCache:
        """A cache of batch rows `rows` (an index tensor) only, copied, with room for `room` more
        positions."""
        selected = StreamingCache.__new__(StreamingCache)
        selected.__dict__.update(self.__dict__)
        selected.layers = [layer.select_rows(rows, room) for layer in self.layers]
        return selected

    def append_rows(self, rows: torch.Tensor, part: StreamingCache) -> None:
        """Append the positions `part` (a `select_rows` of this cache, grown since) has beyond this
        one to rows `rows`; the other rows get zeros there, which their attention mask must hide."""
        start = self.get_seq_length()
        for layer, grown in zip(self.layers, part.layers, strict=True):
            new = []
            for mine, theirs in ((layer.keys, grown.keys), (layer.values, grown.values)):
                tail = theirs[..., start:, :]
                block = mine.new_zeros((mine.shape[0], *tail.shape[1:]))
                block[rows] = tail
                new.append(block)
            layer.update(*new)


def cache_argument(model) -> str:
    """The keyword under which `model.forward` takes a KV cache in the installed transformers.

    transformers 5.24 renamed `past_key_values` to `cache` (the old name warns and goes in 5.40); a
    forward that does not know the name it is given ignores it and runs with an empty cache, so
    the name is read off the model's own signature (a PEFT wrapper's base model, a DDP module's)."""
    while hasattr(model, "module"):  # DistributedDataParallel and friends
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return _forward_cache_argument(type(model))


@cache
def _forward_cache_argument(model_type: type) -> str:
    parameters = inspect.signature(model_type.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


@contextmanager
def native_gqa_on_cpu(device: torch.device) -> Iterator[None]:
    """Let SDPA read grouped KV heads directly while prefilling a chunk onto a long cache on CPU.

    With an attention mask (any multi-token prefill onto a cache), transformers copies every KV
    head once per query head before SDPA, which on a 6,000-token cache costs more than the layer's
    weights. PyTorch's CPU kernel takes the mask and grouped heads together and gives the same
    result; transformers exposes that through TRANSFORMERS_SDPA_FORCE_GQA. Other devices keep
    transformers' own choice (its GPU kernels fall back to a slow path in that case).
    """
    key = "TRANSFORMERS_SDPA_FORCE_GQA"
    if device.type != "cpu" or key in os.environ:
        yield
        return
    os.environ[key] = "1"
    try:
        yield
    finally:
        del os.environ[key]
