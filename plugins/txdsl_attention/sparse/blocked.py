"""``blocked``: pure PyTorch that computes only the tiles a pattern needs.

Queries and keys are cut into tiles of ``tile`` slots. A tile layout
``(n_q, n_k)`` says which key tiles a query tile may see (each atom's
``blocks``: a superset); the exact mask (:meth:`AttentionMask.allows`, the
same definition as the reference's) is applied inside the gathered tiles.
Query tiles that see at most half of the key tiles gather theirs
(``K`` tiles each: O(T * K * tile) time and memory, O(T * window) for a
window); the others (global positions' tiles) attend to all keys. Autograd
gives the backward, so it trains on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from txdsl.sdk.attention import repeat_kv

from .module import SparseAttention


def _softmax_av(scores: Tensor, allowed: Tensor, v: Tensor, p: float, training: bool) -> Tensor:
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    weights = F.dropout(torch.softmax(scores, dim=-1), p=p, training=training)
    return (weights @ v) * allowed.any(-1, keepdim=True)  # a query seeing nothing: 0


class BlockedSparseAttention(SparseAttention):
    """Block-sparse exact attention in plain PyTorch (impl ``blocked``)."""

    def kernel(self, q, k, v, *, mask, union, position):
        dense_bias = position is not None and position.bias is not None
        if mask.cross or dense_bias:  # no pattern (cross-attention), or a dense (T, S) bias
            return super().kernel(q, k, v, mask=mask, union=union, position=position)
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)
        B, H, T, hd = q.shape
        S, c, dtype = k.shape[2], self.tile, q.dtype
        work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        nq, nk = -(-T // c), -(-S // c)
        dev = q.device
        qi = torch.arange(nq * c, device=dev)  # query indices (padded)
        slot = (mask.q_slots[qi.clamp(max=T - 1)] if mask.q_slots is not None
                else qi + (S - T))  # the queries' slots
        qs, qe = slot.view(nq, c)[:, 0], slot.view(nq, c)[:, -1]  # first/last slot of a tile
        ks = torch.arange(nk, device=dev) * c
        ke = ks + c - 1
        layout = union.blocks(qs[:, None], qe[:, None], ks[None], ke[None])  # (nq, nk)
        layout = layout.expand(nq, nk).clone()
        if mask.causal:
            layout &= ks[None] <= qe[:, None]
        q_pad = F.pad(q.to(work), (0, 0, 0, nq * c - T)).view(B, H, nq, c, hd)
        k_pad = F.pad(k.to(work), (0, 0, 0, nk * c - S))
        v_pad = F.pad(v.to(work), (0, 0, 0, nk * c - S))
        out = q_pad.new_zeros(B, H, nq, c, hd)
        counts = layout.sum(-1)
        dense = counts * 2 > nk
        b_idx = torch.arange(B, device=dev).view(B, 1, 1, 1, 1)
        h_idx = torch.arange(H, device=dev).view(1, H, 1, 1, 1)
        sparse_rows = (~dense).nonzero().flatten()
        if sparse_rows.numel():
            K = max(int(counts[sparse_rows].max()), 1)
            # the K key tiles of each query tile, the ones it sees first (stable order)
            order = torch.sort((~layout[sparse_rows]).to(torch.int8), dim=-1, stable=True)
            tiles = order.indices[:, :K]  # (n, K)
            ok_tile = torch.arange(K, device=dev)[None] < counts[sparse_rows][:, None]
            kv_idx = (tiles[..., None] * c + torch.arange(c, device=dev)).flatten(1)  # (n, K*c)
            kv_ok = ok_tile.repeat_interleave(c, dim=1) & (kv_idx < S)
            kg = k_pad.view(B, H, nk, c, hd)[:, :, tiles].flatten(3, 4)  # (B, H, n, K*c, hd)
            vg = v_pad.view(B, H, nk, c, hd)[:, :, tiles].flatten(3, 4)
            qg = q_pad[:, :, sparse_rows]  # (B, H, n, c, hd)
            scores = qg @ kg.transpose(-1, -2) * self.scale  # (B, H, n, c, K*c)
            q_idx = qi.view(nq, c)[sparse_rows]  # (n, c)
            allowed = mask.allows(b_idx, h_idx, q_idx.clamp(max=T - 1)[None, None, :, :, None],
                                  kv_idx.clamp(max=S - 1)[None, None, :, None, :], T, S)
            allowed = allowed & kv_ok[None, None, :, None, :]
            out[:, :, sparse_rows] = _softmax_av(scores, allowed, vg, self.dropout,
                                                 self.training)
        dense_rows = dense.nonzero().flatten()
        if dense_rows.numel():
            qd = q_pad[:, :, dense_rows]  # (B, H, m, c, hd)
            scores = qd @ k_pad[:, :, None].transpose(-1, -2) * self.scale  # (B, H, m, c, S')
            q_idx = qi.view(nq, c)[dense_rows]
            kv = torch.arange(nk * c, device=dev)
            allowed = mask.allows(b_idx, h_idx, q_idx.clamp(max=T - 1)[None, None, :, :, None],
                                  kv.clamp(max=S - 1)[None, None, None, None, :], T, S)
            allowed = allowed & (kv < S)
            out[:, :, dense_rows] = _softmax_av(scores, allowed, v_pad[:, :, None], self.dropout,
                                                self.training)
        return out.view(B, H, nq * c, hd)[:, :, :T].to(dtype)  # (B, H, T, hd)

