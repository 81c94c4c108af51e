"""Attention with persistent memory (Sukhbaatar et al. 2019, "Augmenting Self-attention
with Persistent Memory", https://arxiv.org/abs/1907.01470).

``memory`` learned key and value vectors per key/value head are appended to
every query's keys and values: always visible (neither causality nor padding
hides them), never cached (they are parameters), not position-encoded::

    softmax(q [K; M_k]^T * scale + [bias, 0]) [V; M_v]

The all-attention layer is this attention in a stack with ``ffn = none``
(``specs/all_attention.tx``). ``memory: 0`` is exact full attention. The
paper initialises M_k ~ N(0, 1/hd) and M_v ~ N(0, 1/N); a spec can load others.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, NonNegativeInt
from torch import Tensor, nn

from txdsl.sdk import AttentionArgs, Dims
from txdsl.sdk.attention import Attention, masked_fill_value, repeat_kv


class PersistentArgs(AttentionArgs):
    """Full attention plus persistent memory vectors (Sukhbaatar et al. 2019)."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk", "bias"})
    unsupported: ClassVar[dict[str, str]] = {
        "cross": "persistent memory is defined for self-attention"}
    example: ClassVar[dict] = {"memory": 4}

    memory: NonNegativeInt = Field(description="learned key/value vectors per key/value head "
                                   "appended to every query's keys (N); 0: full attention")

    def param_count(self, dims: Dims) -> int:
        vectors = 2 * self.memory * self.n_kv_heads() * self.head_size(dims)  # keys and values
        return super().param_count(dims) + vectors

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return super().flops_per_token(dims, seq_len + self.memory)


class PersistentMemoryAttention(Attention):
    """Exact softmax attention over this step's (and cached) keys and the persistent ones."""

    def __init__(self, *, memory: int, **parts):
        super().__init__(**parts)
        hd, h_kv = self.head_dim, self.kv_heads
        # (H_kv, N, hd) each
        self.memory_keys = nn.Parameter(torch.randn(h_kv, memory, hd) * hd ** -0.5)
        self.memory_values = nn.Parameter(torch.randn(h_kv, memory, hd) * max(memory, 1) ** -0.5)

    @classmethod
    def from_args(cls, args: PersistentArgs, ctx) -> "PersistentMemoryAttention":
        return cls(memory=args.memory, **cls.projections(args, ctx))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        # q (B, H, T, hd); k, v (B, H_kv, S, hd)
        B, T, S = q.shape[0], q.shape[2], k.shape[2]
        work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        mk = self.memory_keys.to(k.dtype)[None].expand(B, -1, -1, -1)  # (B, H_kv, N, hd)
        mv = self.memory_values.to(v.dtype)[None].expand(B, -1, -1, -1)
        groups = self.heads // self.kv_heads
        keys = repeat_kv(torch.cat([k, mk], dim=2), groups).to(work)  # (B, H, S + N, hd)
        values = repeat_kv(torch.cat([v, mv], dim=2), groups).to(work)
        scores = torch.einsum("bhtd,bhsd->bhts", q.to(work), keys) * self.scale  # (B, H, T, S+N)
        seq, mem = scores[..., :S], scores[..., S:]
        if position is not None and position.bias is not None:
            seq = seq + position.bias.to(work)
        allowed = mask.dense(T, S, device=q.device)  # (B|1, 1, T, S) or None
        if allowed is not None:
            seq = seq.masked_fill(~allowed, masked_fill_value(work))
        weights = torch.softmax(torch.cat([seq, mem], dim=-1), dim=-1)
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        return torch.einsum("bhts,bhsd->bhtd", weights, values).to(q.dtype)  # (B, H, T, hd)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, memory={self.memory_keys.shape[1]}"
