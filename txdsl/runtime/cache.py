"""The decoding cache a model returns as ``past_key_values``: preallocated, fixed shapes.

A :class:`StackCache` holds, for ``capacity`` key slots of ``batch`` rows:

- one decode state per layer *index* (layers that share parameters still see
  different keys), made by that layer's attention (:meth:`Attention.new_state
  <txdsl.sdk.attention.Attention.new_state>`), and one cross-attention state
  per layer for an encoder-decoder model;
- what the mask and positions need about cached keys: ``key_padding``
  ``(B, capacity)`` (``False`` until a real token is written: unwritten slots
  are never attended) and ``key_positions`` ``(B, capacity)``;
- ``length``: a 0-dim tensor, the next free slot;
- ``reserved``: slots ``0..reserved-1`` held by a stack's memory tokens
  (:mod:`txdsl.runtime.memory_tokens`), written at the first call
  (``memory_written``); the sequence's slot ``s`` is slot ``reserved + s``.
  :meth:`StackCache.slots`, ``cache_position`` and ``get_seq_length`` count
  the sequence's slots; ``capacity`` counts all of them.

Every step writes in place at its slots; no tensor changes shape, so a
compiled decode step compiles once. Eager callers that outgrow the capacity
get it doubled (:meth:`StackCache.ensure`); ``generate`` allocates exactly
what it needs up front.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ..sdk.cache import CrossKV


class StackCache:
    """The decode states of one stack's layers, and what is known about cached keys."""

    def __init__(self, attentions: Sequence[Any], *, batch: int, capacity: int,
                 device: Any = None, dtype: torch.dtype = torch.float32, cross: bool = False,
                 reserved: int = 0):
        if capacity < 1:
            raise ValueError(f"cache capacity ({capacity}) must be at least 1")
        capacity += reserved  # the memory tokens' slots come first
        self.batch, self.capacity, self.reserved = batch, capacity, reserved
        self.memory_written = reserved == 0  # the memory tokens' keys are in slots 0..reserved-1
        self.self_attention = [a.new_state(batch, capacity, device=device, dtype=dtype)
                               for a in attentions]
        self.cross_attention = [CrossKV() for _ in attentions] if cross else None
        self.key_padding = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.key_positions = torch.zeros(batch, capacity, dtype=torch.long, device=device)
        self.length = torch.full((), reserved, dtype=torch.long, device=device)
        self.padded = False  # any padding written (else causality alone hides unwritten slots)
        # Sized and decided on the host by the caller (generate): no growth, and ``padded``
        # is known before the first step, so a compiled step trusts it (no per-step checks).
        self.planned = False

    def slots(self, T: int) -> Tensor:
        """The ``(T,)`` sequence slots of the next ``T`` tokens (after the memory's)."""
        return self.length - self.reserved + torch.arange(T, device=self.length.device)

    def ensure(self, needed: int) -> None:
        """Eager only: make room for ``needed`` slots, doubling the capacity."""
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity)
        extra = capacity - self.capacity
        for state in self.self_attention:
            state.grow(capacity)
        self.key_padding = torch.nn.functional.pad(self.key_padding, (0, extra))
        self.key_positions = torch.nn.functional.pad(self.key_positions, (0, extra))
        self.capacity = capacity

    def write(self, slots: Tensor, real: Tensor, positions: Tensor) -> None:
        """Record this step's tokens at ``slots``: ``real`` ``(B, T)`` bool, ``positions`` ``(B|1, T)``."""
        self.key_padding.index_copy_(1, slots, real)
        self.key_positions.index_copy_(1, slots, positions.expand(self.batch, -1))
        self.length.copy_(slots[-1] + 1)

    def reorder(self, index: Tensor) -> None:
        for c in self.self_attention + (self.cross_attention or []):
            c.reorder(index)
        self.key_padding, self.key_positions = self.key_padding[index], self.key_positions[index]
        self.batch = int(index.shape[0])

    def nbytes(self) -> int:
        return sum(c.nbytes() for c in self.self_attention + (self.cross_attention or []))


class ModelCache:
    """``past_key_values`` of a :class:`~txdsl.runtime.model.TxModel`.

    ``stack`` is allocated by the model at the first step (it needs the batch
    size) unless :meth:`TxModel.new_cache <txdsl.runtime.model.TxModel.new_cache>`
    made it; an encoder-decoder model also keeps the encoder's output and its
    padding mask, so later steps skip the encoder.
    """

    def __init__(self, stack: StackCache | None = None, capacity: int | None = None):
        self.stack = stack
        self.capacity = capacity  # wanted capacity when the model allocates the stack
        self.memory: Tensor | None = None  # (B, S, d_model): the encoder's output
        self.memory_mask: Tensor | None = None  # (B, S): its key padding, 1 = real

    def get_seq_length(self) -> int:
        """Positions already decoded (Hugging Face's name)."""
        return 0 if self.stack is None else int(self.stack.length) - self.stack.reserved

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search)."""
        if self.stack is not None:
            self.stack.reorder(index)
        if self.memory is not None:
            self.memory = self.memory[index]
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask[index]
