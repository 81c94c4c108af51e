"""``blocked``: pure PyTorch that computes only the tiles a pattern needs.

Queries and keys are cut into tiles of ``tile`` slots. A tile layout
``(n_q, n_k)`` says which key tiles a query tile may see (each atom's
``blocks``: a superset); the exact mask (:meth:`AttentionMask.allows`, the
same definition as the reference's) is applied inside the gathered tiles.
Each query tile gathers at most ``K`` key tiles, a bound known from the
pattern alone (:meth:`max_tiles`: O(T * window) time and memory for a
window), except the tiles holding a global query, which see every key. No
shape depends on data, so it compiles without graph breaks; autograd gives
the backward, so it trains on CPU.

It falls back to the reference (dense) computation where tiles don't pay:
cross-attention, a dense score bias (ALiBi, T5), decoding with a cache
(``q_slots``), and run-time global positions (``global_attention_mask``),
whose tiles depend on data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from txdsl.sdk.attention import repeat_kv

from . import patterns as P
from .module import SparseAttention


def _softmax_av(scores: Tensor, allowed: Tensor, v: Tensor, p: float, training: bool) -> Tensor:
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    weights = F.dropout(torch.softmax(scores, dim=-1), p=p, training=training)
    return (weights @ v) * allowed.any(-1, keepdim=True)  # a query seeing nothing: 0


def _global_query_tiles(union: P.Union, c: int, offset: int, T: int) -> set[int]:
    out: set[int] = set()
    for atom in union.parts:
        if isinstance(atom, P.Global):
            out |= atom.query_tiles(c, offset, T)
    return out


class BlockedSparseAttention(SparseAttention):
    """Block-sparse exact attention in plain PyTorch (impl ``blocked``)."""

    def kernel(self, q, k, v, *, mask, union, position):
        dense_bias = position is not None and position.bias is not None
        if (mask.cross or dense_bias or mask.q_slots is not None
                or not all(hasattr(a, "max_tiles") for a in union.parts)):
            return super().kernel(q, k, v, mask=mask, union=union, position=position)
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)
        B, H, T, hd = q.shape
        S, c, dtype = k.shape[2], self.tile, q.dtype
        work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        nq, nk, offset, dev = -(-T // c), -(-S // c), S - T, q.device
        K = max(1, min(nk, union.max_tiles(c, nk)))
        dense_rows = sorted(_global_query_tiles(union, c, offset, T))
        if K == nk:  # every tile may be needed: all rows see all key tiles
            dense_rows = list(range(nq))
        sparse_rows = [i for i in range(nq) if i not in set(dense_rows)]

        q_pad = F.pad(q.to(work), (0, 0, 0, nq * c - T)).view(B, H, nq, c, hd)
        k_pad = F.pad(k.to(work), (0, 0, 0, nk * c - S))
        v_pad = F.pad(v.to(work), (0, 0, 0, nk * c - S))
        q_idx = torch.arange(nq * c, device=dev).view(nq, c)  # query indices (padded)
        b_idx = torch.arange(B, device=dev).view(B, 1, 1, 1, 1)
        h_idx = torch.arange(H, device=dev).view(1, H, 1, 1, 1)
        parts = []
        if sparse_rows:
            rows = torch.tensor(sparse_rows, device=dev)
            qs = rows * c + offset  # the tiles' first and last query slots
            ks = torch.arange(nk, device=dev) * c
            layout = union.blocks(qs[:, None], qs[:, None] + c - 1, ks[None], ks[None] + c - 1)
            layout = layout.expand(len(sparse_rows), nk)
            if mask.causal:
                layout = layout & (ks[None] <= qs[:, None] + c - 1)
            # the K key tiles of each query tile: the ones it sees first (a stable sort)
            order = torch.sort((~layout).to(torch.int8), dim=-1, stable=True)
            tiles = order.indices[:, :K]  # (n, K)
            seen = torch.gather(layout, 1, tiles)  # (n, K): a tile K doesn't fill is not seen
            kv_idx = (tiles[..., None] * c + torch.arange(c, device=dev)).flatten(1)  # (n, K*c)
            kv_ok = seen.repeat_interleave(c, dim=1) & (kv_idx < S)
            kg = k_pad.view(B, H, nk, c, hd)[:, :, tiles].flatten(3, 4)  # (B, H, n, K*c, hd)
            vg = v_pad.view(B, H, nk, c, hd)[:, :, tiles].flatten(3, 4)
            scores = q_pad[:, :, rows] @ kg.transpose(-1, -2) * self.scale  # (B, H, n, c, K*c)
            qi = q_idx[rows].clamp(max=T - 1)[None, None, :, :, None]
            allowed = mask.allows(b_idx, h_idx, qi, kv_idx.clamp(max=S - 1)[None, None, :, None],
                                  T, S) & kv_ok[None, None, :, None]
            parts.append((rows, _softmax_av(scores, allowed, vg, self.dropout, self.training)))
        if dense_rows:
            rows = torch.tensor(dense_rows, device=dev)
            scores = q_pad[:, :, rows] @ k_pad[:, :, None].transpose(-1, -2) * self.scale
            kv = torch.arange(nk * c, device=dev)
            qi = q_idx[rows].clamp(max=T - 1)[None, None, :, :, None]
            allowed = mask.allows(b_idx, h_idx, qi, kv.clamp(max=S - 1), T, S) & (kv < S)
            parts.append((rows, _softmax_av(scores, allowed, v_pad[:, :, None], self.dropout,
                                            self.training)))  # (B, H, m, c, hd)
        order = torch.cat([r for r, _ in parts]).argsort()
        out = torch.cat([y for _, y in parts], dim=2)[:, :, order]  # (B, H, nq, c, hd)
        return out.reshape(B, H, nq * c, hd)[:, :, :T].to(dtype)  # (B, H, T, hd)
