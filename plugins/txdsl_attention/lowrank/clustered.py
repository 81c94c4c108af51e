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

``topk`` > 0 is the paper's *improved* clustered attention (i-clustered, its
section 3.3): each centroid's ``topk`` most attended keys ``T_j`` are scored
again by every query of the cluster, exactly, and share the mass the centroid
gave them; the other keys keep the centroid's weights::

    A^t_il = m_j exp(q_i k_l / sqrt d) / sum_{r in T_j} exp(q_i k_r / sqrt d)   (l in T_j)
    A^t_il = A^c_jl                                                           (otherwise)
    m_j = sum_{l in T_j} A^c_jl,   j = c(i)

so queries of one cluster can still attend to different keys. With ``topk`` >=
S every query scores every key and the result is softmax attention exactly,
whatever the clusters.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, NonNegativeInt, PositiveInt
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
    topk: NonNegativeInt = Field(default=0, description="improved clustered attention "
                                 "(i-clustered): every query re-scores its centroid's topk "
                                 "most attended keys exactly (the paper uses 32); 0: plain")

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd, c = self.head_size(dims), min(self.clusters, seq_len)
        proj = 2 * AttentionArgs.param_count(self, dims)
        kmeans = 3 * self.heads * hd * c * (self.iterations + 1)
        improved = 2 * 2 * self.heads * hd * min(self.topk, seq_len)  # per query, k keys
        return proj + kmeans + (2 * 2 * self.heads * hd * c * seq_len) // seq_len + improved


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

    def __init__(self, *, clusters: int, iterations: int, topk: int = 0, **base):
        super().__init__(**base)
        self.clusters, self.iterations, self.topk = clusters, iterations, topk

    @classmethod
    def from_args(cls, args: ClusteredArgs, ctx) -> "ClusteredAttention":
        return cls(clusters=args.clusters, iterations=args.iterations, topk=args.topk,
                   **cls.projections(args, ctx))

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
        weights = torch.softmax(scores, dim=-1)  # (B, H, C, S): A^c
        if self.topk:
            return self.improved(q, k, v, w, weights, assign).to(dtype)
        weights = torch.nn.functional.dropout(weights, p=self.dropout, training=self.training)
        out = weights @ v  # (B, H, C, hd)
        return out.gather(2, assign[..., None].expand(B, H, T, hd)).to(dtype)  # (B, H, T, hd)

    def improved(self, q: Tensor, k: Tensor, v: Tensor, w: Tensor | None, weights: Tensor,
                 assign: Tensor) -> Tensor:
        """i-clustered: each query re-scores its centroid's top keys (module docstring)."""
        (B, H, T, hd), S = q.shape, k.shape[2]
        n = min(self.topk, S)
        top_w, top = weights.topk(n, dim=-1)  # (B, H, C, n): A^c on T_j, and T_j
        mass = top_w.sum(-1)  # (B, H, C): m_j
        rest = weights.scatter(-1, top, 0.0)  # A^c off T_j
        rest = torch.nn.functional.dropout(rest, p=self.dropout, training=self.training)
        out = (rest @ v).gather(2, assign[..., None].expand(B, H, T, hd))  # (B, H, T, hd)
        mine = top.gather(2, assign[..., None].expand(B, H, T, n))  # (B, H, T, n): T_c(i)
        flat = mine.reshape(B, H, T * n, 1).expand(B, H, T * n, hd)
        k_top = k.gather(2, flat).reshape(B, H, T, n, hd)
        v_top = v.gather(2, flat).reshape(B, H, T, n, hd)
        exact = torch.einsum("bhtd,bhtnd->bhtn", q, k_top) * self.scale  # (B, H, T, n)
        if w is not None:  # a padded key among T_j (only when n exceeds the real keys)
            real = w[:, :, :, 0].expand(B, H, S).gather(2, mine.reshape(B, H, T * n))
            exact = exact.masked_fill(real.reshape(B, H, T, n) == 0,
                                      masked_fill_value(exact.dtype))
        a_t = torch.softmax(exact, dim=-1) * mass.gather(2, assign)[..., None]
        a_t = torch.nn.functional.dropout(a_t, p=self.dropout, training=self.training)
        return out + torch.einsum("bhtn,bhtnd->bhtd", a_t, v_top)  # (B, H, T, hd)
