"""Transformer-XL's sinusoidal relative position embeddings (Dai et al. 2019), acting on scores.

No parameters: ``R_d = [sin(d * f), cos(d * f)]`` with ``f_k = 10000 ** (-2k /
d_model)`` for a query-key distance ``d`` (the original ``PositionalEmbedding``,
sines then cosines, not interleaved; XLNet uses the same table). Each layer's
attention projects R by its own ``r_net`` and adds ``q.R`` and ``v.R`` terms
(``relative_xl``, ``two_stream``); :meth:`RelativeXLPositions.scores` hands
it this module, whose :meth:`embed` gives R for any distances.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from txdsl.sdk import BuildContext, PositionArgs


class RelativeXLPositionArgs(PositionArgs):
    """Transformer-XL sinusoidal relative embeddings (Dai et al. 2019,
    https://arxiv.org/abs/1901.02860); projected by the attention's ``r_net``.
    No parameters."""

    acts: ClassVar = "scores"


class RelativeXLPositions(nn.Module):
    acts = "scores"

    def __init__(self, *, d_model: int):
        super().__init__()
        self.d_model = d_model
        inv_freq = 1.0 / (10000 ** (torch.arange(0.0, d_model, 2.0) / d_model))
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (d_model / 2,)

    @classmethod
    def from_args(cls, args: RelativeXLPositionArgs, ctx: BuildContext) -> "RelativeXLPositions":
        return cls(d_model=ctx.dims.d_model)

    def embed(self, distance: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Distances ``(L,)`` -> ``(L, d_model)``: sines, then cosines."""
        angles = distance.to(self.inv_freq)[:, None] * self.inv_freq[None]  # (L, d_model / 2)
        return torch.cat([angles.sin(), angles.cos()], dim=-1).to(dtype)

    def scores(self, q_positions: Tensor, k_positions: Tensor,
               dtype: torch.dtype) -> "RelativeXLPositions":
        """What the attention reads: this module (distances depend on the segment memory,
        which only the attention knows)."""
        return self

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}"
