"""What the two Synthesizer kinds share: no queries or keys, weights over ``max_len`` slots.

Synthesizer attention (Tay, Bahri, Metzler, Juan, Zhao, Zheng 2021,
https://arxiv.org/abs/2005.00743) replaces ``softmax(Q K^T)`` by synthetic
weights ``softmax(B)`` with ``B`` ``(H, T, S)`` predicted from each token alone
(``synthesizer_dense``) or learned/fixed outright (``synthesizer_random``),
over at most ``max_len`` positions; then ``out = softmax(B + mask) G(X)``
with ``G`` the value projection. Causal and key-padding masks apply as usual.
The decode state keeps only values (:class:`ValueCache`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, AttentionArgs, Dims
from txdsl.sdk.args import linear_params
from txdsl.sdk.attention import Attention, masked_fill_value

from .scores import no_gqa, query_slots


class ValueCache:
    """Preallocated ``(B, H, capacity, hd)`` values, written in place at each step's slots."""

    def __init__(self, batch: int, heads: int, capacity: int, head_dim: int, *, device=None,
                 dtype: torch.dtype = torch.float32):
        self.v = torch.zeros(batch, heads, capacity, head_dim, device=device, dtype=dtype)

    def update(self, v: Tensor, slots: Tensor) -> Tensor:
        self.v.index_copy_(2, slots, v.to(self.v.dtype))
        return self.v

    def reorder(self, index: Tensor) -> None:
        self.v = self.v[index]

    def grow(self, capacity: int) -> None:
        if capacity > self.v.shape[2]:
            self.v = nn.functional.pad(self.v, (0, 0, 0, capacity - self.v.shape[2]))

    def nbytes(self) -> int:
        return self.v.nbytes


class SynthesizerArgs(AttentionArgs):
    """Arguments both Synthesizer kinds take."""

    accepts: ClassVar[frozenset[str]] = frozenset()  # no queries or keys for a position to act on
    unsupported: ClassVar[dict[str, str]] = {
        "cross": "synthetic weights range over the positions of the layer's own sequence"}
    example: ClassVar[dict[str, Any]] = {"max_len": 64}
    max_len: PositiveInt = Field(description="the longest sequence (the weights have max_len "
                                 "columns); at least the model's context")

    def check(self, dims: Dims) -> None:
        super().check(dims)
        no_gqa(self, "synthesizer attention", "it has no queries or keys")
        if dims.context is not None and self.max_len < dims.context:
            raise ArgError(f"max_len ({self.max_len}) is shorter than the context "
                           f"({dims.context})", arg="max_len", hint="set max_len: context")

    def base_params(self, dims: Dims) -> int:
        hd, d = self.head_size(dims), dims.width
        return linear_params(d, self.heads * hd, self.bias) + linear_params(self.heads * hd, d,
                                                                           self.bias)

    def kv_cache_per_token(self, dims: Dims) -> int:
        return self.heads * self.head_size(dims)


class SynthesizerAttention(Attention):
    """Values and output projection from the base; the weights from :meth:`logits`."""

    def __init__(self, *, max_len: int, **parts):
        parts["q_proj"] = parts["k_proj"] = None
        super().__init__(**parts)
        self.max_len = max_len

    @classmethod
    def from_args(cls, args: SynthesizerArgs, ctx) -> "SynthesizerAttention":
        return cls(max_len=args.max_len, **cls.projections(args, ctx))

    def new_state(self, batch: int, capacity: int, *, device=None, dtype=torch.float32):
        return ValueCache(batch, self.heads, capacity, self.head_dim, device=device, dtype=dtype)

    def logits(self, x: Tensor, slots: Tensor, S: int) -> Tensor:
        """``(B, T, d)`` tokens, ``(T,)`` their slots -> ``(B|1, H, T, S)`` synthetic scores."""
        raise NotImplementedError

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask, position=None,
                cache=None, state=None) -> Tensor:
        if memory is not None:
            raise ValueError("synthesizer attention has no cross-attention form")
        B, T, _ = x.shape
        v = self.split(self.v_proj(x), self.heads)  # (B, H, T, hd)
        if cache is not None:
            v = cache.update(v, mask.q_slots)  # (B, H, capacity, hd)
        S = v.shape[2]
        if S > self.max_len:
            raise ValueError(f"synthesizer attention: {S} keys, but max_len is {self.max_len}")
        slots = query_slots(mask, T, S, x.device)
        work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        scores = self.logits(x, slots, S).to(work).expand(B, -1, -1, -1)  # (B, H, T, S)
        allowed = mask.dense(T, S, device=x.device)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, masked_fill_value(work))
        weights = torch.softmax(scores, dim=-1)
        weights = nn.functional.dropout(weights, p=self.dropout, training=self.training)
        y = torch.einsum("bhts,bhsd->bhtd", weights, v.to(work)).to(x.dtype)  # (B, H, T, hd)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d_model)
