"""Positions inside attention: one :class:`PositionContext` per stack forward.

A stack's position scheme acts in one of the places the contract names
(:class:`txdsl.sdk.PositionArgs`): a transform of queries and keys (RoPE,
``acts == "qk"``) or an additive score bias (ALiBi, T5 buckets,
``acts == "bias"``). Its module implements :class:`PositionModule`; the
stack calls it **once per forward** with the positions of this step's
queries and of all keys, ``(B|1, T)`` and ``(B|1, S)`` (per row, so packed
documents and left padding get their own positions), and every layer reads
the result:

- ``rotary``: ``(cos, sin)``, each ``(B|1, 1, T, rotary_dim)``, applied by
  :meth:`PositionContext.rotate` to this step's queries and keys (cached
  keys were rotated when they were written);
- ``bias``: the ``(B|1, H, T, S)`` score bias, shared by the layers (T5
  shares its bias across layers by construction);
- ``scores`` (``acts == "scores"``): whatever the module's ``scores(q_positions,
  k_positions, dtype)`` returns for an attention that adds its own score terms
  (DeBERTa's bucketed distances and relative embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor


class PositionModule(Protocol):
    """A stack-level position scheme acting inside attention.

    ``acts == "qk"``: ``rotary_dim`` and ``cos_sin(positions (B|1, T), dtype)
    -> (cos, sin)`` each ``(B|1, T, rotary_dim)``; ``acts == "bias"``:
    ``bias(q_positions (B|1, T), k_positions (B|1, S)) -> (B|1, H, T, S)``.
    """

    acts: str


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last dimension (Llama's pairing: i with i + d/2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first ``cos.shape[-1]`` dims of ``x`` ``(B, H, T, hd)``; keep the rest."""
    rot_dim = cos.shape[-1]
    rot, rest = x[..., :rot_dim], x[..., rot_dim:]
    rot = rot * cos + rotate_half(rot) * sin
    return rot if rest.shape[-1] == 0 else torch.cat((rot, rest), dim=-1)


@dataclass(eq=False)
class PositionContext:
    """One stack forward's positions, computed once and shared by all of its layers.

    ``q_positions`` ``(B|1, T)``; ``k_positions`` ``(B|1, S)`` (cached keys
    first); ``rotary`` ``(cos, sin)`` ``(B|1, 1, T, rot)`` or ``None``;
    ``bias`` ``(B|1, H, T, S)`` float or ``None``.
    """

    q_positions: Tensor
    k_positions: Tensor
    rotary: tuple[Tensor, Tensor] | None = None
    bias: Tensor | None = None
    scores: Any = None  # acts == "scores": the module's own per-forward data

    @classmethod
    def build(cls, module: PositionModule | None, q_positions: Tensor, k_positions: Tensor,
              dtype: torch.dtype) -> "PositionContext":
        """Compute what ``module`` contributes, once, for these positions."""
        rotary = bias = scores = None
        if module is not None and module.acts == "qk":
            cos, sin = module.cos_sin(q_positions, dtype)  # type: ignore[attr-defined]
            rotary = (cos[:, None], sin[:, None])  # (B|1, 1, T, rot): broadcast over heads
        elif module is not None and module.acts == "bias":
            bias = module.bias(q_positions, k_positions)  # type: ignore[attr-defined]
        elif module is not None and module.acts == "scores":
            scores = module.scores(q_positions, k_positions, dtype)  # type: ignore[attr-defined]
        return cls(q_positions, k_positions, rotary, bias, scores)

    def rotate(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Apply the q/k transform (RoPE) to this step's ``(B, H, T, hd)`` queries and keys."""
        if self.rotary is None:
            return q, k
        cos, sin = self.rotary
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)

    def score_mod(self):
        """The bias as a FlexAttention ``score_mod`` (the twin of adding :attr:`bias`)."""
        if self.bias is None:
            return None
        bias = self.bias

        def add_bias(score, b, h, q_idx, kv_idx):
            return score + bias[b if bias.shape[0] > 1 else 0, h, q_idx, kv_idx].to(score.dtype)

        return add_bias
