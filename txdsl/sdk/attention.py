"""The attention call contract: masks, positions and the KV cache are explicit.

Every attention module is called as::

    out = attn(x, memory, mask=mask, position=position, cache=cache)

- ``x``: queries' input, ``(B, T, d_model)``;
- ``memory``: ``None`` for self-attention, else the ``(B, S, d_model)``
  states to attend to (cross-attention over an encoder's output);
- ``mask``: an :class:`AttentionMask` (causal flag and key padding), never
  implied: an implementation that ignored it would silently be wrong, so the
  shared test suite runs every registered implementation through the same
  mask cases;
- ``position``: a :class:`PositionContext` or ``None``: a q/k transform
  (RoPE) and/or an additive score bias (ALiBi, T5) from the stack's position
  scheme;
- ``cache``: a :class:`KVCache` or ``None``; when given, self-attention
  appends this step's keys and values and attends over all of them; cross-
  attention computes ``memory``'s keys and values once and reuses them.

It returns ``(B, T, d_model)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


@dataclass
class AttentionMask:
    """Which keys each query may see.

    ``causal``: query ``i`` (the ``i``-th of the last ``T`` positions) sees keys
    up to its own position; ``key_padding``: ``(B, S)`` bool, ``True`` for a
    real key, ``False`` for padding (``None``: no padding).
    """

    causal: bool = False
    key_padding: Tensor | None = None

    def dense(self, T: int, S: int, device: torch.device | None = None) -> Tensor | None:
        """``(B|1, 1, T, S)`` bool, ``True`` where attending is allowed; ``None`` if all is."""
        allowed = None
        if self.causal:
            q_pos = torch.arange(S - T, S, device=device)[:, None]
            k_pos = torch.arange(S, device=device)[None, :]
            allowed = (k_pos <= q_pos)[None, None]  # (1, 1, T, S)
        if self.key_padding is not None:
            pad = self.key_padding.to(device=device, dtype=torch.bool)[:, None, None, :]  # (B,1,1,S)
            allowed = pad if allowed is None else allowed & pad
        return allowed

    def additive(self, T: int, S: int, dtype: torch.dtype,
                 device: torch.device | None = None) -> Tensor | None:
        """The mask as an additive ``(B|1, 1, T, S)`` float tensor (0 or the dtype's min).

        A large finite negative, not ``-inf``, so a fully masked row (a padding
        query) gives uniform weights instead of NaN, as Hugging Face does.
        """
        allowed = self.dense(T, S, device)
        if allowed is None:
            return None
        zero = torch.zeros((), dtype=dtype, device=device)
        return torch.where(allowed, zero, torch.finfo(dtype).min)


class PositionModule(Protocol):
    """A stack-level position scheme acting inside attention (``acts`` != ``embedding``).

    ``rotate(q, k, positions)``: ``(B, H, T, hd)`` queries and keys at
    ``positions`` ``(T,)`` to transformed ones (``acts == "qk"``);
    ``bias(q_positions, k_positions)``: the additive ``(1|B, H, T, S)`` score
    bias (``acts == "bias"``).
    """

    acts: str


@dataclass
class PositionContext:
    """One stack forward's positions, shared by all of its layers.

    ``q_positions``: ``(T,)`` absolute positions of this step's tokens;
    ``k_positions``: ``(S,)`` of all keys (cached ones first); ``bias``: the
    additive score bias, computed once per forward (T5 shares it across
    layers), or ``None``.
    """

    module: PositionModule | None
    q_positions: Tensor
    k_positions: Tensor
    bias: Tensor | None = None

    def rotate(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Apply a q/k transform (RoPE) to this step's queries and keys, if any."""
        if self.module is not None and self.module.acts == "qk":
            return self.module.rotate(q, k, self.q_positions)  # type: ignore[attr-defined]
        return q, k


class KVCache:
    """The keys and values one attention module has seen while decoding.

    Self-attention calls :meth:`append` each step; cross-attention calls
    :meth:`store` once and reads ``k``/``v`` afterwards.
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None  # (B, H_kv, S, hd)
        self.v: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=2)
            self.v = torch.cat([self.v, v], dim=2)  # type: ignore[list-item]
        return self.k, self.v  # type: ignore[return-value]

    def store(self, k: Tensor, v: Tensor) -> None:
        self.k, self.v = k, v

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search)."""
        if self.k is not None:
            self.k, self.v = self.k[index], self.v[index]  # type: ignore[index]
