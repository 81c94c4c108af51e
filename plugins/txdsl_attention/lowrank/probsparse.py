"""ProbSparse self-attention (Zhou et al. 2021, "Informer: Beyond Efficient
Transformer for Long Sequence Time-Series Forecasting",
https://arxiv.org/abs/2012.07436).

Each query's sparsity measurement over a sample of the keys::

    M(q_i, K) = max_j (q_i k_j^T / sqrt d) - mean_j (q_i k_j^T / sqrt d)

picks the ``u = factor * ceil(ln T)`` most "active" queries; they get softmax
attention over all keys, the others the mean of V. Not causal: the
ranking runs over all queries, so which past queries attend depends on the
future (Informer's masked variant, with the cumulative sum of V for the lazy
queries, leaks so; it is refused here). The sample is ``factor * ceil(ln S)`` keys at evenly
spaced positions (Informer samples at random; a fixed sample keeps the
output a function of the input). With ``u`` >= T every query is active and
the result is softmax attention exactly. Padded keys are left out of the
measurement, the attention and the mean.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor

from txdsl.sdk import AttentionArgs
from txdsl.sdk.args import Dims
from txdsl.sdk.attention import Attention, masked_fill_value, repeat_kv

from .common import NO_DECODE, key_weights, masked_mean


def active(factor: int, length: int) -> int:
    """Informer's ``factor * ceil(ln L)``, at least 1 and at most ``length``."""
    return max(1, min(length, factor * math.ceil(math.log(max(length, 2)))))


class ProbSparseArgs(AttentionArgs):
    """Informer's ProbSparse attention (Zhou et al. 2021): top-u queries attend, the rest
    get the mean of V (bidirectional only)."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk"})
    unsupported: ClassVar[dict[str, str]] = {
        "causal": "which u queries attend is decided by ranking all queries, future ones "
                  "included, so a past output depends on the future (Informer's masked "
                  "decoder attention has this leak)",
        "decode": NO_DECODE,
    }

    factor: PositiveInt = Field(default=5, description="c in u = c * ceil(ln T) active queries "
                                "and c * ceil(ln S) sampled keys (Informer's default 5)")

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd, u = self.head_size(dims), active(self.factor, seq_len)
        proj = 2 * AttentionArgs.param_count(self, dims)
        measure = 2 * self.heads * hd * u  # each query against the sampled keys
        return proj + measure + (2 * 2 * self.heads * hd * seq_len * u) // seq_len


class ProbSparseAttention(Attention):
    """Softmax attention for the ``u`` queries with the largest sparsity measurement."""

    def __init__(self, *, factor: int, **base):
        super().__init__(**base)
        self.factor = factor

    @classmethod
    def from_args(cls, args: ProbSparseArgs, ctx) -> "ProbSparseAttention":
        return cls(factor=args.factor, **cls.projections(args, ctx))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        dtype, (B, H, T, hd), S = q.dtype, q.shape, k.shape[2]
        groups = self.heads // self.kv_heads
        q, k, v = q.float(), repeat_kv(k, groups).float(), repeat_kv(v, groups).float()
        allowed = mask.dense(T, S, device=q.device)  # (B|1, 1, T, S) bool or None
        fill = masked_fill_value(torch.float32)
        # The measurement on evenly spaced sampled keys.
        n_sample = active(self.factor, S)
        picked = torch.arange(n_sample, device=q.device) * S // n_sample  # (n,)
        sample = q @ k[:, :, picked].transpose(-1, -2) * self.scale  # (B, H, T, n)
        seen = None if allowed is None else allowed[..., picked].expand(B, 1, T, n_sample)
        if seen is None:
            measure = sample.amax(-1) - sample.mean(-1)  # (B, H, T)
        else:
            count = seen.sum(-1).clamp(min=1)
            measure = (sample.masked_fill(~seen, fill).amax(-1)
                       - (sample * seen).sum(-1) / count)
        u = active(self.factor, T)
        top = measure.topk(u, dim=-1).indices  # (B, H, u)
        # The lazy queries' output: the mean of the real keys' values.
        w = key_weights(mask, B, S, v.dtype, v.device)
        out = masked_mean(v, w).expand(B, H, T, hd)  # (B, H, T, hd)
        # The active queries: softmax attention over every allowed key.
        q_top = q.gather(2, top[..., None].expand(B, H, u, hd))  # (B, H, u, hd)
        scores = q_top @ k.transpose(-1, -2) * self.scale  # (B, H, u, S)
        if allowed is not None:
            rows = allowed.expand(B, H, T, S).gather(2, top[..., None].expand(B, H, u, S))
            scores = scores.masked_fill(~rows, fill)
        weights = torch.nn.functional.dropout(torch.softmax(scores, dim=-1), p=self.dropout,
                                              training=self.training)
        out = out.scatter(2, top[..., None].expand(B, H, u, hd), weights @ v)
        return out.to(dtype)
