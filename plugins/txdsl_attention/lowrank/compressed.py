"""Memory-compressed attention (Liu et al. 2018, "Generating Wikipedia by Summarizing
Long Sequences", https://arxiv.org/abs/1801.10198, sec. 4.2.2).

Keys and values are shortened by a strided convolution (kernel = stride =
``stride``, over all head channels) before softmax attention, so a query
attends to ``ceil(S / stride)`` compressed slots::

    K' = conv_k(K), V' = conv_v(V);  head = softmax(Q K'^T / sqrt d) V'

A length that is not a multiple of ``stride`` is zero-padded at the end.
Padded keys are zeroed before the convolution and a slot whose keys are all
padded is masked.

Causal (the paper uses it in a decoder): the keys are cut into blocks of
``stride``; compressed slot ``j`` summarises block ``j`` only, so a query in
block ``b`` sees the slots ``j < b`` (blocks wholly in its past) and, locally,
the raw keys of its own block up to itself, one softmax over both::

    head_t = softmax([q_t K'_{<b}^T, q_t K_{bs..t}^T] / sqrt d) [V'_{<b}; V_{bs..t}]

O(T (T / stride + stride)) scores, and no future key reaches a query. A
decode step would need the partial block's keys plus every finished slot:
not kept (no decode state).
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
    unsupported: ClassVar[dict[str, str]] = {"decode": NO_DECODE}

    stride: PositiveInt = Field(default=3, description="kernel size and stride of the "
                                "convolution shortening K and V (the paper uses 3)")

    def param_count(self, dims: Dims) -> int:
        c = self.n_kv_heads() * self.head_size(dims)
        return super().param_count(dims) + 2 * (c * c * self.stride + c)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd, c = self.head_size(dims), self.n_kv_heads() * self.head_size(dims)
        proj = 2 * AttentionArgs.param_count(self, dims)
        conv = 2 * 2 * c * c  # two convolutions, stride x c x c per stride tokens
        # causal adds the own block's <= stride raw keys; the bidirectional count is kept
        return proj + conv + 2 * 2 * self.heads * hd * -(-seq_len // self.stride)


class CompressedAttention(Attention):
    """Softmax attention over keys and values compressed by a strided convolution."""

    no_kv_cache = NO_DECODE

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
        if mask.causal and not mask.cross:
            return self.causal(q, k, v, w)
        k = repeat_kv(self.compress(self.conv_k, k), groups)  # (B, H, S', hd)
        v = repeat_kv(self.compress(self.conv_v, v), groups)
        scores = (q @ k.transpose(-1, -2)).float() * self.scale  # (B, H, T, S')
        if w is not None:
            slot = F.max_pool1d(F.pad(w[:, :, :, 0], (0, -S % self.stride)), self.stride)
            scores = scores.masked_fill(slot[:, :, None] == 0, masked_fill_value(scores.dtype))
        weights = F.dropout(torch.softmax(scores, dim=-1), p=self.dropout, training=self.training)
        return (weights.to(v.dtype) @ v)  # (B, H, T, hd)

    def causal(self, q: Tensor, k: Tensor, v: Tensor, w: Tensor | None) -> Tensor:
        """Earlier blocks compressed, the own block raw and causal; ``k``/``v``
        ``(B, H_kv, T, hd)`` with padded keys zeroed, ``w`` ``(B, 1, T, 1)`` or ``None``."""
        B, H, T, hd = q.shape
        s, groups = self.stride, self.heads // self.kv_heads
        kc = repeat_kv(self.compress(self.conv_k, k), groups)  # (B, H, N, hd)
        vc = repeat_kv(self.compress(self.conv_v, v), groups)
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, T, hd)
        N, fill = kc.shape[2], masked_fill_value(torch.float32)
        block = torch.arange(T, device=q.device) // s  # (T,) each query's block
        comp = (q @ kc.transpose(-1, -2)).float() * self.scale  # (B, H, T, N)
        comp = comp.masked_fill(torch.arange(N, device=q.device) >= block[:, None], fill)
        pad = N * s - T
        qb, kb, vb = (F.pad(t, (0, 0, 0, pad)).view(B, H, N, s, hd) for t in (q, k, v))
        local = (qb @ kb.transpose(-1, -2)).float() * self.scale  # (B, H, N, s, s)
        ok = torch.ones(s, s, dtype=torch.bool, device=q.device).tril()  # (s, s)
        if w is not None:
            real = F.pad(w[:, :, :, 0], (0, pad)).view(B, 1, N, 1, s) > 0
            ok = ok & real
        local = local.masked_fill(~ok, fill).reshape(B, H, N * s, s)[:, :, :T]  # (B, H, T, s)
        weights = torch.softmax(torch.cat([comp, local], dim=-1), dim=-1)
        weights = F.dropout(weights, p=self.dropout, training=self.training).to(v.dtype)
        out = weights[..., :N] @ vc  # (B, H, T, hd): the compressed past
        wl = F.pad(weights[..., N:], (0, 0, 0, pad)).view(B, H, N, s, s)
        return out + (wl @ vb).reshape(B, H, N * s, hd)[:, :, :T]  # + the own block
