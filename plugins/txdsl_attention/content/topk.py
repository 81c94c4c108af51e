"""``topk``: explicit sparse attention — each query keeps only its k highest scores.

Zhao, Lin, Sun, Zhang, Su, Sun, "Explicit Sparse Transformer: Concentrated
Attention Through Explicit Selection", 2019, https://arxiv.org/abs/1912.11637:

    t_i = the k-th largest of the scores s_i1..s_iS (after masking)
    A_ij = softmax_j(s_ij if s_ij >= t_i else -inf),   out_i = sum_j A_ij v_j

Scores tied with the k-th are all kept (so a row may keep more than k). With
``k`` >= the number of keys this is exactly ``full``. Every score is still
computed (the selection is what the paper adds, not a saving in FLOPs), but a
few query rows at a time (:func:`.common.by_row_chunks`, ~16 MiB of scores per
chunk, recomputed in the backward), so memory is O(T) beyond the chunk; decoding keeps the exact
key/value cache of full attention.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PositiveInt
from torch import Tensor

from txdsl.sdk import AttentionArgs, Dims
from txdsl.sdk.attention import Attention, masked_fill_value, repeat_kv

from .common import by_row_chunks, masked_softmax_sum, rows_allowed, work_dtype


class TopKArgs(AttentionArgs):
    """Explicit sparse attention (Zhao et al. 2019): keep the top-``k`` scores per query."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk", "bias"})
    example: ClassVar[dict] = {"k": 3}

    k: PositiveInt = Field(8, description="keys each query keeps: those with its k highest "
                                          "scores (ties with the k-th kept); k >= keys is full")

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        # dense scores as full attention, plus a k-selection over seq_len scores per head
        return super().flops_per_token(dims, seq_len) + self.heads * seq_len


class TopKAttention(Attention):
    """Softmax attention over each query's ``k`` highest-scoring visible keys."""

    def __init__(self, *, k: int, **base):
        super().__init__(**base)
        self.k = k

    @classmethod
    def from_args(cls, args: TopKArgs, ctx) -> "TopKAttention":
        return cls(k=args.k, **cls.projections(args, ctx))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, S, hd)
        T, S, dtype = q.shape[2], k.shape[2], q.dtype
        work = work_dtype(dtype)
        kt, v = k.to(work).transpose(-1, -2), v.to(work)
        bias = position.bias if position is not None else None

        def rows(i0: int, i1: int) -> Tensor:
            scores = (q[:, :, i0:i1].to(work) @ kt) * self.scale  # (B, H, t, S)
            if bias is not None:
                scores = scores + bias[..., i0:i1, :].to(work)
            allowed = rows_allowed(mask, i0, i1, T, S, q.device)  # (B|1, 1, t, S) or None
            if allowed is not None:
                scores = scores.masked_fill(~allowed, masked_fill_value(work))
            if self.k < S:
                kth = scores.topk(self.k, dim=-1).values[..., -1:]  # (B, H, t, 1)
                keep = scores >= kth
                allowed = keep if allowed is None else keep & allowed
            return masked_softmax_sum(scores, allowed, v, dropout=self.dropout,
                                      training=self.training)

        return by_row_chunks(rows, T, q.shape[0] * q.shape[1] * S).to(dtype)  # (B, H, T, hd)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}"
