"""The decoding cache a model returns as ``past_key_values``.

One :class:`~txdsl.sdk.attention.KVCache` per layer *index* for
self-attention (layers that share parameters still see different keys) and
one per layer for cross-attention, plus, for encoder-decoder models, the
encoder's output and its padding mask, so later decoding steps skip the
encoder.
"""

from __future__ import annotations

from torch import Tensor

from ..sdk.attention import KVCache


class StackCache:
    """The caches of one stack's layers."""

    def __init__(self, layers: int, cross: bool = False):
        self.self_attention = [KVCache() for _ in range(layers)]
        self.cross_attention = [KVCache() for _ in range(layers)] if cross else None

    @property
    def length(self) -> int:
        """How many positions the self-attention caches hold."""
        return self.self_attention[0].length if self.self_attention else 0

    def reorder(self, index: Tensor) -> None:
        for c in self.self_attention + (self.cross_attention or []):
            c.reorder(index)


class ModelCache:
    """``past_key_values`` of a :class:`~txdsl.runtime.model.TxModel`."""

    def __init__(self, layers: int, cross: bool = False):
        self.stack = StackCache(layers, cross)
        self.memory: Tensor | None = None  # (B, S, d_model): the encoder's output
        self.memory_mask: Tensor | None = None  # (B, S): its key padding, 1 = real

    def get_seq_length(self) -> int:
        """Positions already decoded (Hugging Face's name)."""
        return self.stack.length

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search)."""
        self.stack.reorder(index)
        if self.memory is not None:
            self.memory = self.memory[index]
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask[index]
