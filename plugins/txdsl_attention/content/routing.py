"""``routing``: Routing Transformer attention — queries see the keys of their k-means cluster.

Roy, Saffar, Vaswani, Grangier, "Efficient Content-Based Sparse Attention with
Routing Transformers", TACL 2021, https://arxiv.org/abs/2003.05997. Per head:

    q^ = LayerNorm(q), k^ = LayerNorm(k)   (no scale or shift; unit-normalised)
    c(x) = argmax_m  x^ . mu_m              (the nearest of ``clusters`` centroids)
    out_i = sum_{j : c(k_j) = c(q_i), allowed} softmax_j(q_i . k_j * scale) v_j

A query always sees its own key (slot), so a causal first token whose
cluster holds only future keys still has something to attend to (the
paper's implementation always has the token's own window). The centroids
``mu`` ``(H, clusters, hd)`` are a buffer, not parameters: in training each
forward (after attending with the old centroids) moves them by an exponential
moving average toward the mean of the normalised queries and keys assigned
to them, ``mu <- decay * mu + (1 - decay) * mean``, then re-normalises them
(spherical k-means; the paper's Eq. splits the mean half queries, half keys).

This is the *definition*, computed a few query rows at a time
(:func:`.common.by_row_chunks`: ~16 MiB of scores per chunk, recomputed in the
backward, no ``(T, S)`` mask),
so memory is O(T) beyond the chunk but time is still O(T·S): the balanced
top-w-per-cluster gather of the paper's fast implementation (sorted clusters
in chunks, which drops keys of overfull clusters) is not written. Decoding uses full attention's
exact key/value cache (a key's cluster depends only on it and the centroids).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor

from txdsl.sdk import AttentionArgs, Dims
from txdsl.sdk.attention import Attention, repeat_kv

from .common import by_row_chunks, masked_softmax_sum, query_slots, rows_allowed, work_dtype


class RoutingArgs(AttentionArgs):
    """Routing attention (Roy et al. 2021): attention within online k-means clusters."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk", "bias"})
    unsupported: ClassVar[dict[str, str]] = {
        "cross": "clusters route one sequence's queries and keys (the own-key rule needs "
                 "queries and keys of one sequence)",
    }

    clusters: PositiveInt = Field(4, description="k-means centroids per head; each query "
                                                 "sees the keys of its nearest centroid")
    decay: float = Field(0.999, gt=0.0, lt=1.0, description="EMA decay of the centroids "
                                                            "(updated in training only)")
    seed: int = Field(0, description="seed of the initial centroids (fixed per build)")

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        # full attention's dense scores plus routing q and k to the centroids
        hd = self.head_size(dims)
        return super().flops_per_token(dims, seq_len) + 2 * 2 * self.heads * hd * self.clusters


def unit(x: Tensor) -> Tensor:
    """LayerNorm without scale or shift, divided by sqrt(hd): unit-length, zero-mean rows."""
    return F.layer_norm(x, x.shape[-1:]) / x.shape[-1] ** 0.5


class RoutingAttention(Attention):
    """Softmax attention masked to same-cluster (query, key) pairs; EMA k-means centroids."""

    def __init__(self, *, clusters: int, decay: float, seed: int, **base):
        super().__init__(**base)
        self.clusters, self.decay = clusters, decay
        gen = torch.Generator().manual_seed(seed)
        mu = F.normalize(torch.randn(self.heads, clusters, self.head_dim, generator=gen), dim=-1)
        self.register_buffer("centroids", mu)  # (H, C, hd), saved with the weights

    @classmethod
    def from_args(cls, args: RoutingArgs, ctx) -> "RoutingAttention":
        return cls(clusters=args.clusters, decay=args.decay, seed=args.seed,
                   **cls.projections(args, ctx))

    def assign(self, x: Tensor) -> Tensor:
        """``(B, H, T, hd)`` -> the nearest centroid of each vector ``(B, H, T)``."""
        return torch.einsum("bhtd,hcd->bhtc", unit(x), self.centroids.to(x.dtype)).argmax(-1)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, S, hd)
        T, S, dtype = q.shape[2], k.shape[2], q.dtype
        work = work_dtype(dtype)
        q, k = q.to(work), k.to(work)
        kt, vw = k.transpose(-1, -2), v.to(work)
        bias = position.bias if position is not None else None
        slots = query_slots(mask, T, S, q.device)
        q_cluster, k_cluster = self.assign(q), self.assign(k)  # (B, H, T), (B, H, S)

        def rows(i0: int, i1: int) -> Tensor:
            scores = (q[:, :, i0:i1] @ kt) * self.scale  # (B, H, t, S)
            if bias is not None:
                scores = scores + bias[..., i0:i1, :].to(work)
            own = torch.arange(S, device=q.device) == slots[i0:i1, None]  # (t, S)
            allowed = (q_cluster[..., i0:i1, None] == k_cluster[..., None, :]) | own
            base = rows_allowed(mask, i0, i1, T, S, q.device)  # (B|1, 1, t, S) or None
            if base is not None:
                allowed = allowed & base
            return masked_softmax_sum(scores, allowed, vw, dropout=self.dropout,
                                      training=self.training)

        out = by_row_chunks(rows, T, q.shape[0] * q.shape[1] * S)  # (B, H, T, hd)
        if self.training:
            self.update_centroids(q, k)
        return out.to(dtype)  # (B, H, T, hd)

    @torch.no_grad()
    def update_centroids(self, q: Tensor, k: Tensor) -> None:
        """One EMA k-means step toward the mean of the queries and keys assigned to each."""
        x = torch.cat([unit(q), unit(k)], dim=2).transpose(0, 1).flatten(1, 2)  # (H, N, hd)
        mu = self.centroids.to(x.dtype)
        onehot = F.one_hot(torch.einsum("hnd,hcd->hnc", x, mu).argmax(-1),
                           self.clusters).to(x.dtype)  # (H, N, C)
        counts = onehot.sum(1)[..., None]  # (H, C, 1)
        mean = (onehot.transpose(1, 2) @ x) / counts.clamp(min=1)  # (H, C, hd)
        moved = torch.where(counts > 0, self.decay * mu + (1 - self.decay) * mean, mu)
        self.centroids.copy_(F.normalize(moved, dim=-1).to(self.centroids.dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, clusters={self.clusters}, decay={self.decay}"
