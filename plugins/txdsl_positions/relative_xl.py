"""Transformer-XL's sinusoidal relative position embeddings (Dai et al. 2019), acting on scores.

No parameters: ``R_d = [sin(d * f), cos(d * f)]`` with ``f_k = 10000 ** (-2k /
d_model)`` for a query-key distance ``d`` (the original ``PositionalEmbedding``,
sines then cosines, not interleaved; XLNet uses the same table). Each layer's
attention projects R by its own ``r_net`` and adds ``q.R`` and ``v.R`` terms
(``relative_xl``, ``two_stream``); :meth:`RelativeXLPositions.scores` hands
it this module, whose :meth:`embed` gives R for any distances.

``query_stream: true`` (XLNet) adds ``mask_emb`` ``(1, 1, d_model)``, HF
``XLNetModel.mask_emb``: given ``target_mapping`` ``(B, P, T)``, the stack's
input gains P positions holding it, the query stream's start
(:meth:`open_streams`; the ``two_stream`` attention reads them).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from pydantic import Field

from txdsl.sdk import BuildContext, Dims, PositionArgs


class RelativeXLPositionArgs(PositionArgs):
    """Transformer-XL sinusoidal relative embeddings (Dai et al. 2019,
    https://arxiv.org/abs/1901.02860); projected by the attention's ``r_net``.
    No parameters."""

    acts: ClassVar = "scores"
    query_stream: bool = Field(default=False, description="XLNet: a learned mask_emb starts "
                               "the query stream for target_mapping (d_model parameters)")

    def param_count(self, dims: Dims) -> int:
        return dims.d_model if self.query_stream else 0


class RelativeXLPositions(nn.Module):
    acts = "scores"

    def __init__(self, *, d_model: int, mask_emb: nn.Parameter | None = None):
        super().__init__()
        self.d_model = d_model
        self.mask_emb = mask_emb  # (1, 1, d_model) or None
        inv_freq = 1.0 / (10000 ** (torch.arange(0.0, d_model, 2.0) / d_model))
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (d_model / 2,)

    @classmethod
    def from_args(cls, args: RelativeXLPositionArgs, ctx: BuildContext) -> "RelativeXLPositions":
        d = ctx.dims.d_model
        mask_emb = nn.Parameter(torch.zeros(1, 1, d)) if args.query_stream else None
        return cls(d_model=d, mask_emb=mask_emb)

    def open_streams(self, x: Tensor, state) -> Tensor:
        """``(B, T, d)`` -> ``(B, T + P, d)``: the query stream after the content, when
        ``state.inputs`` has a ``target_mapping`` ``(B, P, T)`` and this has a mask_emb."""
        mapping = state.inputs.get("target_mapping") if self.mask_emb is not None else None
        if mapping is None:
            return x
        B, P = mapping.shape[:2]
        state.query_stream = P
        return torch.cat([x, self.mask_emb.to(x.dtype).expand(B, P, -1)], dim=1)

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
