"""Decode state: what one attention module keeps between decoding steps.

The state belongs to the attention kind (:meth:`Attention.new_state
<txdsl.sdk.attention.Attention.new_state>`) and is **preallocated**: its
tensors have the same shapes at every step, so a compiled decode step is
compiled once and CUDA graphs can capture it. Writes are in place at the
step's key slots (``index_copy_``), never by concatenation.

- :class:`StaticKV`: ``(B, H_kv, capacity, hd)`` key and value buffers for
  exact attention (``full``); slots not written yet are hidden by the mask
  (the stack's key padding starts all ``False``).
- :class:`CrossKV`: cross-attention's keys and values of the encoder output,
  computed at the first step and reused.

Other kinds bring their own (a ring buffer of ``window`` slots for a sliding
window, a constant-size recurrent state for linear attention, segment
memory for Transformer-XL) with the same three methods.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class DecodeState(Protocol):
    """What the stack cache needs from an attention's decode state."""

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search), in place."""

    def grow(self, capacity: int) -> None:
        """Make room for ``capacity`` slots, keeping what is stored (eager only)."""

    def nbytes(self) -> int:
        """Bytes held."""


class StaticKV:
    """Preallocated keys and values, written in place at each step's slots."""

    def __init__(self, batch: int, kv_heads: int, capacity: int, head_dim: int, *,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                 v_head_dim: int | None = None):
        self.k = torch.zeros(batch, kv_heads, capacity, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros(batch, kv_heads, capacity, v_head_dim or head_dim, device=device,
                             dtype=dtype)

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def update(self, k: Tensor, v: Tensor, slots: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``(B, H_kv, T, hd)`` keys/values at ``slots`` ``(T,)``; return all slots'."""
        self.k.index_copy_(2, slots, k.to(self.k.dtype))
        self.v.index_copy_(2, slots, v.to(self.v.dtype))
        return self.k, self.v  # (B, H_kv, capacity, hd)

    def reorder(self, index: Tensor) -> None:
        self.k, self.v = self.k[index], self.v[index]

    def grow(self, capacity: int) -> None:
        if capacity > self.capacity:
            extra = capacity - self.capacity
            self.k = torch.nn.functional.pad(self.k, (0, 0, 0, extra))
            self.v = torch.nn.functional.pad(self.v, (0, 0, 0, extra))

    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


class CrossKV:
    """Cross-attention keys and values of the encoder output, stored at the first step."""

    def __init__(self) -> None:
        self.k: Tensor | None = None  # (B, H_kv, S_enc, hd)
        self.v: Tensor | None = None

    @property
    def ready(self) -> bool:
        return self.k is not None

    def store(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v

    def reorder(self, index: Tensor) -> None:
        if self.k is not None:
            self.k, self.v = self.k[index], self.v[index]  # type: ignore[index]

    def grow(self, capacity: int) -> None:
        pass

    def nbytes(self) -> int:
        return 0 if self.k is None else self.k.nbytes + self.v.nbytes  # type: ignore[union-attr]
