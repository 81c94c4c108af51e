"""ProbSparse self-attention (Zhou et al. 2021, "Informer: Beyond Efficient
Transformer for Long Sequence Time-Series Forecasting",
https://arxiv.org/abs/2012.07436).

Each query's sparsity measurement over a sample of the keys::

    M(q_i, K) = max_j (q_i k_j^T / sqrt d) - mean_j (q_i k_j^T / sqrt d)

picks the ``u = factor * ceil(ln T)`` most "active" queries; they get softmax
attention over all keys, the others the mean of V. The sample is ``factor *
ceil(ln S)`` keys at evenly spaced positions. Informer draws each query's sample
at random (with replacement) on every forward; a fixed sample keeps the output
a function of the input, and trains no worse: on the reverse task (80 steps,
seeds 0/1/2) Informer's draw reached 0.286/0.268/0.285, the fixed sample
0.107/0.267/0.038 (tests/plugins/lowrank/test_models.py). With ``u`` >= T
every query is active and the result is softmax attention exactly. Padded
keys are left out of the measurement, the attention and the mean.

Causal (Informer's decoder uses masked ProbSparse self-attention): the
measurement is ``max - mean`` over every key ``<= t`` (Informer's ``M`` without
its key sample: this form computes every score anyway, so a sample would save
nothing, and a fixed one leaves the same keys unmeasured for every query --
on the copy task 0.114 with it, 0.049 without), and query ``t`` is active when
fewer than ``u`` earlier queries outrank it (ties: the earlier wins), so
whether it attends depends on the past only; active queries get causal
softmax attention, lazy ones the mean of the values so far. Informer's own
masked form ranks all queries at once (whether a past query attends
depends on future ones) and gives lazy queries the cumulative *sum* of V;
neither holds in a causal stack. The causal selection is per prefix and
data-dependent, so every query's attention is computed and the active ones
kept: O(T^2) like full attention, not Informer's O(T log T).
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
    unsupported: ClassVar[dict[str, str]] = {"decode": NO_DECODE}

    factor: PositiveInt = Field(default=5, description="c in u = c * ceil(ln T) active queries "
                                "and c * ceil(ln S) sampled keys (bidirectional; causal "
                                "measures every past key) (Informer's default 5)")

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd, u = self.head_size(dims), active(self.factor, seq_len)
        proj = 2 * AttentionArgs.param_count(self, dims)
        measure = 2 * self.heads * hd * u  # each query against the sampled keys
        return proj + measure + (2 * 2 * self.heads * hd * seq_len * u) // seq_len


class ProbSparseAttention(Attention):
    """Softmax attention for the ``u`` queries with the largest sparsity measurement."""

    no_kv_cache = NO_DECODE

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
        u = active(self.factor, T)
        if mask.causal and not mask.cross:
            return self.causal(q, k, v, u, allowed).to(dtype)
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

    def causal(self, q: Tensor, k: Tensor, v: Tensor, u: int, allowed: Tensor) -> Tensor:
        """Per-prefix top-u: query t attends if fewer than u queries s < t measure at least
        as much (max - mean over every key it may see); otherwise it gets the mean of the
        values it may see."""
        T = q.shape[2]
        fill = masked_fill_value(torch.float32)
        scores = (q @ k.transpose(-1, -2) * self.scale).masked_fill(~allowed, fill)  # (B, H, T, S)
        count = allowed.sum(-1).clamp(min=1)  # (B|1, 1, T)
        measure = scores.amax(-1) - scores.masked_fill(~allowed, 0.0).sum(-1) / count  # (B, H, T)
        earlier = torch.ones(T, T, dtype=torch.bool, device=q.device).tril(-1)  # s < t
        outranked = (measure[..., None, :] >= measure[..., :, None]) & earlier  # (B, H, T, T)
        is_active = outranked.sum(-1) < u  # (B, H, T)
        weights = torch.nn.functional.dropout(torch.softmax(scores, dim=-1), p=self.dropout,
                                              training=self.training)
        seen = allowed.to(v.dtype)  # (B|1, 1, T, S)
        lazy = (seen @ v) / seen.sum(-1, keepdim=True).clamp(min=1.0)  # running mean of V
        return torch.where(is_active[..., None], weights @ v, lazy)  # (B, H, T, hd)
