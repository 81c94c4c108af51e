"""Clustered attention (Vyas et al. 2020, "Fast Transformers with Clustered Attention",
https://arxiv.org/abs/2007.04825).

The queries of each head are grouped into ``C`` clusters by k-means; each
centroid attends once, and every query takes its cluster's output::

    A^c = softmax(Q^c K^T / sqrt d),  out_i = (A^c V)_{c(i)}     # O(C S) not O(T S)

The paper clusters LSH hashes by Hamming distance; here k-means runs on the
queries themselves (Euclidean, ``iterations`` Lloyd steps, the centroids
started at evenly spaced queries), which needs no random planes and is the
clustering the hashes approximate. With one cluster per query (``clusters`` >=
T) every centroid is its query and the result is softmax attention exactly.
Padded queries join no centroid; padded keys are masked. Not causal: a
centroid mixes queries of different positions.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor

from txdsl.sdk import AttentionArgs
from txdsl.sdk.args import Dims
from txdsl.sdk.attention import Attention, masked_fill_value, repeat_kv

from .common import NO_DECODE, key_weights


class ClusteredArgs(AttentionArgs):
    """Clustered attention (Vyas et al. 2020): one attention per k-means centroid of the queries."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk"})
    unsupported: ClassVar[dict[str, str]] = {
        "causal": "a centroid averages queries of different positions, so it sees their "
                  "union of keys, future ones included",
        "decode": NO_DECODE,
    }

    clusters: PositiveInt = Field(default=25, description="number of query clusters C (the "
                                  "paper uses 25 to 200); clamped to the sequence length")
    iterations: PositiveInt = Field(default=10, description="Lloyd iterations of k-means")

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd, c = self.head_size(dims), min(self.clusters, seq_len)
        proj = 2 * AttentionArgs.param_count(self, dims)
        kmeans = 3 * self.heads * hd * c * (self.iterations + 1)
        return proj + kmeans + (2 * 2 * self.heads * hd * c * seq_len) // seq_len


def kmeans(x: Tensor, clusters: int, iterations: int, weights: Tensor | None) -> Tensor:
    """Cluster index ``(B, H, T)`` of each row of ``x`` ``(B, H, T, d)``; rows of weight 0
    don't move centroids."""
    T = x.shape[2]
    start = torch.arange(clusters, device=x.device) * T // clusters
    centroids = x[:, :, start]  # (B, H, C, d)
    w = torch.ones_like(x[..., :1]) if weights is None else weights.expand_as(x[..., :1])
    for step in range(iterations + 1):
        assign = torch.cdist(x, centroids).argmin(-1)  # (B, H, T)
        if step == iterations:
            return assign
        onehot = torch.nn.functional.one_hot(assign, clusters).to(x.dtype) * w  # (B, H, T, C)
        count = onehot.sum(2)[..., None]  # (B, H, C, 1)
        means = onehot.transpose(-1, -2) @ x / count.clamp(min=1e-9)
        centroids = torch.where(count > 0, means, centroids)  # an empty cluster stays put
    return assign


class ClusteredAttention(Attention):
    """Softmax attention of ``clusters`` query centroids, broadcast to their members."""

    no_kv_cache = NO_DECODE

    def __init__(self, *, clusters: int, iterations: int, **base):
        super().__init__(**base)
        self.clusters, self.iterations = clusters, iterations

    @classmethod
    def from_args(cls, args: ClusteredArgs, ctx) -> "ClusteredAttention":
        return cls(clusters=args.clusters, iterations=args.iterations, **cls.projections(args, ctx))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        dtype, (B, H, T, hd), S = q.dtype, q.shape, k.shape[2]
        groups = self.heads // self.kv_heads
        q, k, v = q.float(), repeat_kv(k, groups).float(), repeat_kv(v, groups).float()
        w = key_weights(mask, B, S, q.dtype, q.device)  # (B, 1, S, 1)
        qw = w if (w is not None and T == S and not mask.cross) else None
        C = min(self.clusters, T)
        with torch.no_grad():  # the clustering is a discrete choice: no gradient through it
            assign = kmeans(q.detach(), C, self.iterations, qw)  # (B, H, T)
        onehot = torch.nn.functional.one_hot(assign, C).to(q.dtype)  # (B, H, T, C)
        if qw is not None:
            onehot = onehot * qw
        centroids = onehot.transpose(-1, -2) @ q / onehot.sum(2)[..., None].clamp(min=1.0)
        scores = centroids @ k.transpose(-1, -2) * self.scale  # (B, H, C, S)
        if w is not None:
            scores = scores.masked_fill(w.transpose(-1, -2) == 0, masked_fill_value(scores.dtype))
        weights = torch.nn.functional.dropout(torch.softmax(scores, dim=-1), p=self.dropout,
                                              training=self.training)
        out = weights @ v  # (B, H, C, hd)
        return out.gather(2, assign[..., None].expand(B, H, T, hd)).to(dtype)  # (B, H, T, hd)
