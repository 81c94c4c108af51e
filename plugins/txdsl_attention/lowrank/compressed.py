"""Memory-compressed attention (Liu et al. 2018, "Generating Wikipedia by Summarizing
Long Sequences", https://arxiv.org/abs/1801.10198, sec. 4.2.2).

Keys and values are shortened by a strided convolution (kernel = stride =
``stride``, over all head channels) before softmax attention, so a query
attends to ``ceil(S / stride)`` compressed slots::

    K' = conv_k(K), V' = conv_v(V);  head = softmax(Q K'^T / sqrt d) V'

A length that is not a multiple of ``stride`` is zero-padded at the end.
Padded keys are zeroed before the convolution and a slot whose keys are all
padded is masked. The paper's decoder is causal; a slot there summarises
``stride`` keys, some of them after a query, so this kind serves
bidirectional and cross-attention only.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import AttentionArgs
from txdsl.sdk.args import Dims
from txdsl.sdk.attention import Attention, masked_fill_value, repeat_kv

from .common import NO_DECODE, key_weights


class CompressedArgs(AttentionArgs):
    """Memory-compressed attention (Liu et al. 2018): a strided convolution over K and V."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk"})
    unsupported: ClassVar[dict[str, str]] = {
        "causal": "a compressed slot summarises `stride` keys, some after the query",
        "decode": NO_DECODE,
    }

    stride: PositiveInt = Field(default=3, description="kernel size and stride of the "
                                "convolution shortening K and V (the paper uses 3)")

    def param_count(self, dims: Dims) -> int:
        c = self.n_kv_heads() * self.head_size(dims)
        return super().param_count(dims) + 2 * (c * c * self.stride + c)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd, c = self.head_size(dims), self.n_kv_heads() * self.head_size(dims)
        proj = 2 * AttentionArgs.param_count(self, dims)
        conv = 2 * 2 * c * c  # two convolutions, stride x c x c per stride tokens
        return proj + conv + 2 * 2 * self.heads * hd * -(-seq_len // self.stride)


class CompressedAttention(Attention):
    """Softmax attention over keys and values compressed by a strided convolution."""

    def __init__(self, *, stride: int, **base):
        super().__init__(**base)
        c = self.kv_heads * self.head_dim
        self.stride = stride
        self.conv_k = nn.Conv1d(c, c, stride, stride=stride)
        self.conv_v = nn.Conv1d(c, c, stride, stride=stride)

    @classmethod
    def from_args(cls, args: CompressedArgs, ctx) -> "CompressedAttention":
        return cls(stride=args.stride, **cls.projections(args, ctx))

    def compress(self, conv: nn.Conv1d, x: Tensor) -> Tensor:
        """``(B, H_kv, S, hd)`` -> ``(B, H_kv, ceil(S / stride), hd)``."""
        B, Hk, S, hd = x.shape
        flat = F.pad(x.transpose(2, 3).reshape(B, Hk * hd, S), (0, -S % self.stride))
        return conv(flat).view(B, Hk, hd, -1).transpose(2, 3)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        B, S = q.shape[0], k.shape[2]
        w = key_weights(mask, B, S, k.dtype, k.device)  # (B, 1, S, 1)
        if w is not None:
            k, v = k * w, v * w
        groups = self.heads // self.kv_heads
        k = repeat_kv(self.compress(self.conv_k, k), groups)  # (B, H, S', hd)
        v = repeat_kv(self.compress(self.conv_v, v), groups)
        scores = (q @ k.transpose(-1, -2)).float() * self.scale  # (B, H, T, S')
        if w is not None:
            slot = F.max_pool1d(F.pad(w[:, :, :, 0], (0, -S % self.stride)), self.stride)
            scores = scores.masked_fill(slot[:, :, None] == 0, masked_fill_value(scores.dtype))
        weights = F.dropout(torch.softmax(scores, dim=-1), p=self.dropout, training=self.training)
        return (weights.to(v.dtype) @ v)  # (B, H, T, hd)
