"""Induced set attention (Lee et al. 2019, "Set Transformer: A Framework for
Attention-based Permutation-Invariant Neural Networks",
https://arxiv.org/abs/1810.00825, the ISAB block).

``m`` learned inducing points ``I`` first attend to the set ``X``, then ``X``
attends to their summary ``H`` (both multi-head softmax attention)::

    H = I + MHA_1(I, X, X)        # (m, d): the set summarised, O(m n)
    out = MHA_2(X, H, H)          # (n, d)

``MHA_2`` has the usual ``q_proj``/``k_proj``/``v_proj``/``out_proj``; ``MHA_1``
has its own (``pack_*``). The Set Transformer's MAB also adds a layer norm
and a feed-forward to ``H``; here only the residual is kept (the block around
this attention supplies its own norm and FFN for ``out``). Order-free:
it takes no positions. As cross-attention the inducing points summarise the
memory instead of ``x``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import AttentionArgs
from txdsl.sdk.args import Dims
from txdsl.sdk.attention import Attention, AttentionMask, softmax_attention

from .common import NO_DECODE


class InducingArgs(AttentionArgs):
    """Set Transformer's induced set attention (Lee et al. 2019): ``m`` inducing points."""

    accepts: ClassVar[frozenset[str]] = frozenset()  # a set has no order: no positions
    unsupported: ClassVar[dict[str, str]] = {
        "causal": "every inducing point summarises the whole set, future positions included",
        "decode": NO_DECODE,
    }
    example: ClassVar[dict] = {"m": 4}

    m: PositiveInt = Field(description="number of learned inducing points")

    def param_count(self, dims: Dims) -> int:
        return 2 * super().param_count(dims) + self.m * dims.width

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd = self.head_size(dims)
        proj = 2 * 2 * AttentionArgs.param_count(self, dims)
        return proj + 2 * 2 * 2 * self.heads * hd * self.m


class InducingAttention(Attention):
    """ISAB: inducing points attend to the set, the set attends to them."""

    def __init__(self, *, m: int, pack: dict, **base):
        super().__init__(**base)
        d = self.out_proj.out_features
        self.inducing = nn.Parameter(torch.randn(m, d) * d ** -0.5)  # (m, d)
        self.pack_q, self.pack_k = pack["q_proj"], pack["k_proj"]
        self.pack_v, self.pack_out = pack["v_proj"], pack["out_proj"]

    @classmethod
    def from_args(cls, args: InducingArgs, ctx) -> "InducingAttention":
        return cls(m=args.m, pack=cls.projections(args, ctx), **cls.projections(args, ctx))

    def mha(self, projections, x: Tensor, keys: Tensor, mask: AttentionMask) -> Tensor:
        """Multi-head softmax attention of ``x`` ``(B, T, d)`` over ``keys`` ``(B, S, d)``."""
        q_proj, k_proj, v_proj, out_proj = projections
        B, T, _ = x.shape
        q = self.split(q_proj(x), self.heads)  # (B, H, T, hd)
        groups = self.heads // self.kv_heads
        k = self.split(k_proj(keys), self.kv_heads).repeat_interleave(groups, dim=1)
        v = self.split(v_proj(keys), self.kv_heads).repeat_interleave(groups, dim=1)
        y = softmax_attention(q, k, v, mask=mask, scale=self.scale, dropout=self.dropout,
                              training=self.training)  # (B, H, T, hd)
        return out_proj(y.transpose(1, 2).reshape(B, T, -1))

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: AttentionMask,
                position=None, cache=None, state=None) -> Tensor:
        source = x if memory is None else memory  # (B, S, d)
        points = self.inducing.to(x.dtype).expand(x.shape[0], -1, -1)  # (B, m, d)
        keys_mask = AttentionMask(key_padding=mask.key_padding, cross=True)
        h = points + self.mha((self.pack_q, self.pack_k, self.pack_v, self.pack_out),
                              points, source, keys_mask)  # (B, m, d)
        return self.mha((self.q_proj, self.k_proj, self.v_proj, self.out_proj), x, h,
                        AttentionMask(cross=True))  # (B, T, d)
