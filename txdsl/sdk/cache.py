"""Decode state: what one attention module keeps between decoding steps.

The state belongs to the attention kind (:meth:`Attention.new_state
<txdsl.sdk.attention.Attention.new_state>`) and is **preallocated**: its
tensors have the same shapes at every step, so a compiled decode step is
compiled once and CUDA graphs can capture it. Writes are in place at the
step's key slots (``index_copy_``), never by concatenation.

- :class:`StaticKV`: ``(B, H_kv, capacity, hd)`` key and value buffers for
  exact attention (``full``); slots not written yet are hidden by the mask
  (the stack's key padding starts all ``False``).
- :class:`RingKV`: a bounded state for a sliding window: ``sinks`` slots for
  leading global positions that every query sees, a ring of ``window``
  slots for the most recent keys (slot ``s`` lives at ``sinks + s % window``)
  and one scratch slot; memory independent of the generated length.
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


class RingKV:
    """Keys and values of the last ``window`` slots and of the first ``sinks`` slots.

    ``update`` returns the keys held *before* this step followed by this step's
    keys (``(B, H_kv, sinks + window + 1 + T, hd)``) and their slots
    (``(sinks + window + 1 + T,)``, ``-1`` for an empty place), so a chunk longer
    than the window still sees its own keys; then it stores the step's sink
    slots and its last ``window`` slots in place. Shapes never change.
    """

    def __init__(self, batch: int, kv_heads: int, window: int, head_dim: int, *, sinks: int = 0,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        self.window, self.sinks = window, sinks
        n = sinks + window + 1  # the last place is scratch for writes nobody keeps
        self.k = torch.zeros(batch, kv_heads, n, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros(batch, kv_heads, n, head_dim, device=device, dtype=dtype)
        self.slots = torch.full((n,), -1, dtype=torch.long, device=device)

    def update(self, k: Tensor, v: Tensor, slots: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Store ``(B, H_kv, T, hd)`` keys/values of ``slots`` ``(T,)`` (increasing); return
        the keys/values to attend over and their slots."""
        T, scratch = k.shape[2], self.k.shape[2] - 1
        keys = torch.cat([self.k, k.to(self.k.dtype)], dim=2)
        values = torch.cat([self.v, v.to(self.v.dtype)], dim=2)
        key_slots = torch.cat([self.slots, slots])
        recent = torch.arange(T, device=slots.device) >= T - self.window  # the ring keeps these
        ring = self.sinks + (slots - self.sinks) % max(self.window, 1)
        place = torch.where(slots < self.sinks, slots,
                            torch.where(recent, ring, torch.full_like(slots, scratch)))
        self.k.index_copy_(2, place, k.to(self.k.dtype))
        self.v.index_copy_(2, place, v.to(self.v.dtype))
        self.slots.index_copy_(0, place, slots)
        self.slots[scratch] = -1
        return keys, values, key_slots

    def reorder(self, index: Tensor) -> None:
        self.k, self.v = self.k[index], self.v[index]

    def grow(self, capacity: int) -> None:
        pass  # bounded: the ring never grows

    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes
