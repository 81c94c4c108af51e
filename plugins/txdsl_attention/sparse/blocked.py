"""``blocked``: exact sparse attention over the gathered key columns of each query tile.

The tile plan (:mod:`.tiling`) gives every query tile of ``c`` slots the same
``K`` key columns (its band of tiles, random tiles, global columns) and the
exact mask on them, ``(B|1, H|1, nq, c, K)``. The kernel runs SDPA on
``(B * nq, H, c, K)`` score blocks — one batched call per group of tiles,
the groups bounding the gathered keys to ~``GROUP_BYTES`` — so time and
memory are O(T * K), never (T, T). On CPU a custom autograd function
(:class:`TiledAttention`) saves only q, k, v, the output and the
log-sum-exp and recomputes each group's gather in the backward (flash-style);
with dropout in training, or off CPU, autograd differentiates the groups.
Global queries (rows that see every key) are computed apart, against all
keys, and replace their rows (as Hugging Face's Longformer does).

Dense fallback (SDPA with the dense mask): cross-attention, a score bias
(ALiBi, T5), decoding (``q_slots``), patterns without a plan (strided, a
ring), a run-time ``global_attention_mask`` under ``torch.compile``, and
sequences where the columns would cover every key anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from txdsl.sdk.attention import repeat_kv

from . import patterns as P
from . import tiling
from .module import SDPASparseAttention

GROUP_BYTES = 2 << 20  # gathered keys per group of tiles (k and v each)
MASK_ELEMENTS = 1 << 18  # (query, column) pairs per step of the tile mask's evaluation
_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


def _rows(t: Tensor, g0: int, g1: int, c: int) -> Tensor:
    """Query tiles ``g0..g1`` of ``t`` ``(B, H, Tp, hd)`` as SDPA rows ``(B*g, H, c, hd)``
    (row ``b * g + tile - g0``; a view for batch 1 in the ``(B, T, H, hd)`` layout)."""
    B, H, _, hd = t.shape
    return t.transpose(1, 2)[:, g0 * c:g1 * c].reshape(B * (g1 - g0), c, H, hd).transpose(1, 2)


def _unrows(y: Tensor, B: int) -> Tensor:
    """SDPA rows ``(B*g, H, c, hd)`` -> ``(B, g, c, H, hd)`` (the ``(B, T, H, hd)`` layout)."""
    Bg, H, c, hd = y.shape
    return y.view(B, Bg // B, H, c, hd).transpose(2, 3)


def _per_batch(a: Tensor, g0: int, g1: int, B: int) -> Tensor:
    """``(B|1, H|1, nq, c, X)`` -> tiles ``g0..g1`` as ``(B*g, H|1, c, X)``."""
    a = a[:, :, g0:g1].transpose(1, 2)  # (B|1, g, H|1, c, X)
    return a.expand(B, *a.shape[1:]).reshape(B * (g1 - g0), *a.shape[2:])


def _gather(q, k, v, cols, allowed, g0, g1):
    """One group of tiles in SDPA layout: q ``(B*g, H, c, hd)``, k/v ``(B*g, H, K, hd)``
    (rows of whole ``H * hd`` vectors gathered from the ``(B, S, H, hd)`` layout), the
    additive mask ``(B*g, H|1, c, K)`` and whether a query sees anything ``(B*g, H|1, c, 1)``."""
    B, H, _, hd = q.shape
    g, c = g1 - g0, allowed.shape[3]
    kg = k.transpose(1, 2)[:, cols[g0:g1]].reshape(B * g, -1, H, hd).transpose(1, 2)
    vg = v.transpose(1, 2)[:, cols[g0:g1]].reshape(B * g, -1, H, hd).transpose(1, 2)
    a = _per_batch(allowed, g0, g1, B)
    m = torch.zeros(a.shape, dtype=q.dtype, device=q.device).masked_fill(
        ~a, torch.finfo(q.dtype).min)
    return _rows(q, g0, g1, c), kg, vg, m, a.any(-1, keepdim=True).to(q.dtype)


def _groups(nq: int, B: int, H: int, K: int, hd: int, itemsize: int) -> list[tuple[int, int]]:
    per = max(1, GROUP_BYTES // max(1, B * H * K * hd * itemsize))
    return [(i, min(nq, i + per)) for i in range(0, nq, per)]


class TiledAttention(torch.autograd.Function):
    """SDPA over each tile's gathered columns, group by group; the backward recomputes
    the gathers. q ``(B, H, Tp, hd)``, k/v ``(B, H, S, hd)``, cols ``(nq, K)``, allowed
    ``(B|1, H|1, nq, c, K)`` -> ``(B, Tp, H, hd)`` (a query seeing nothing: 0)."""

    @staticmethod
    def forward(ctx, q, k, v, cols, allowed, scale):
        B, H, Tp, hd = q.shape
        c = allowed.shape[3]
        out = q.new_empty(B, Tp, H, hd)
        lses = []
        groups = _groups(cols.shape[0], B, H, cols.shape[1], hd, k.element_size())
        for g0, g1 in groups:
            qg, kg, vg, m, seen = _gather(q, k, v, cols, allowed, g0, g1)
            y, lse = _flash(qg, kg, vg, 0.0, False, attn_mask=m, scale=scale)
            out.view(B, -1, c, H, hd)[:, g0:g1] = _unrows(y * seen, B)
            lses.append(lse)  # (B*g, H, c)
        lse = torch.cat(lses)
        ctx.save_for_backward(q, k, v, cols, allowed, out, lse)
        ctx.scale, ctx.groups = scale, groups
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, cols, allowed, out, lse = ctx.saved_tensors
        B, H, Tp, hd = q.shape
        c = allowed.shape[3]
        dq = torch.zeros(B, Tp, H, hd, dtype=q.dtype, device=q.device)
        dk = torch.zeros(B, k.shape[2], H, hd, dtype=k.dtype, device=k.device)
        dv = torch.zeros(B, v.shape[2], H, hd, dtype=v.dtype, device=v.device)
        for g0, g1 in ctx.groups:
            qg, kg, vg, m, seen = _gather(q, k, v, cols, allowed, g0, g1)
            dy = (_rows(dout.transpose(1, 2), g0, g1, c) * seen).contiguous()
            y = _rows(out.transpose(1, 2), g0, g1, c)
            dqg, dkg, dvg = _flash_backward(dy, qg, kg, vg, y, lse[B * g0:B * g1], 0.0, False,
                                            attn_mask=m, scale=ctx.scale)
            dq.view(B, -1, c, H, hd)[:, g0:g1] = _unrows(dqg, B)
            idx = cols[g0:g1].flatten()
            per_key = lambda t: t.transpose(1, 2).reshape(B, -1, H, hd)  # noqa: E731
            dk.index_add_(1, idx, per_key(dkg))  # (B, g*K, H, hd)
            dv.index_add_(1, idx, per_key(dvg))
        return dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2), None, None, None


def tiled_autograd(q, k, v, cols, allowed, scale, dropout):
    """The same groups differentiated by autograd (dropout in training; off CPU)."""
    B, H, _, hd = q.shape
    parts = []
    for g0, g1 in _groups(cols.shape[0], B, H, cols.shape[1], hd, k.element_size()):
        qg, kg, vg, m, seen = _gather(q, k, v, cols, allowed, g0, g1)
        y = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=m, dropout_p=dropout,
                                           scale=scale)
        parts.append(_unrows(y * seen, B))  # (B, g, c, H, hd)
    return torch.cat(parts, 1).flatten(1, 2)  # (B, Tp, H, hd)


class BlockedSparseAttention(SDPASparseAttention):
    """Block-sparse exact attention in plain PyTorch (impl ``blocked``)."""

    def kernel(self, q, k, v, *, mask, union, position):
        B, H, T, hd = q.shape
        S = k.shape[2]
        runtime = next((a.mask for a in tiling.leaves(union)
                        if isinstance(a, P.GlobalInput)), None)
        compiling = torch.compiler.is_compiling()
        tiles = None
        if not (mask.cross or mask.q_slots is not None or T != S or
                (position is not None and position.bias is not None)):
            tiles = mask._once(("tiles", T, self.tile, str(q.device)), lambda: tiling.plan(
                union, self.tile, T, mask.causal, q.device, runtime, compiling)) \
                if runtime is None else tiling.plan(union, self.tile, T, mask.causal, q.device,
                                                    runtime, compiling)
        if tiles is None or tiles.cols.shape[1] >= S:
            return super().kernel(q, k, v, mask=mask, union=union, position=position)
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)
        c, nq = tiles.c, tiles.nq
        heads = H if self.head_dependent else 1
        allowed = mask._once(("tile_mask", T, c, str(q.device), heads), lambda: self.tile_mask(
            mask, tiles, T, heads, q.device)) if runtime is None else \
            self.tile_mask(mask, tiles, T, heads, q.device)  # (B|1, H|1, nq, c, K)
        if nq * c != T:
            q = F.pad(q, (0, 0, 0, nq * c - T))  # (B, H, Tp, hd)
        p = self.dropout if self.training else 0.0
        if q.device.type == "cpu" and p == 0.0:
            y = TiledAttention.apply(q, k, v, tiles.cols, allowed, self.scale)
        else:
            y = tiled_autograd(q, k, v, tiles.cols, allowed, self.scale, p)
        y = y[:, :T].transpose(1, 2)  # (B, H, T, hd), laid out as (B, T, H, hd)
        rows = self.global_row_index(tiles, q.device)
        if rows is None or self.global_rows_elsewhere:
            return y  # (B, H, T, hd)
        return y.index_copy(2, rows, self.dense_rows(q, k, v, mask, rows, heads))

    @staticmethod
    def tile_mask(mask, tiles, T: int, heads: int, device) -> Tensor:
        """``(B|1, H|1, nq, c, K)`` bool: the definition on the gathered columns, evaluated
        a few tiles at a time (the index arithmetic's temporaries stay small)."""
        B, nq, c, K = mask._batch(), tiles.nq, tiles.c, tiles.cols.shape[1]
        i32 = torch.int32  # index arithmetic: half the bytes of int64
        b = torch.arange(B, device=device, dtype=i32).view(B, 1, 1, 1, 1)
        h = torch.arange(heads, device=device, dtype=i32).view(1, heads, 1, 1, 1)
        qi = torch.arange(nq * c, device=device, dtype=i32).clamp(max=T - 1).view(1, 1, nq, c, 1)
        kv = tiles.cols.to(i32)[None, None, :, None]  # (1, 1, nq, 1, K)
        step = max(1, MASK_ELEMENTS // (c * K))
        return torch.cat([mask.allows(b, h, qi[:, :, i:i + step], kv[:, :, i:i + step], T, T)
                          .expand(-1, -1, min(step, nq - i), c, K)
                          for i in range(0, nq, step)], 2) & tiles.valid[None, None, :, None]

    @staticmethod
    def global_row_index(tiles, device) -> Tensor | None:
        rows = torch.tensor(tiles.row_slots, dtype=torch.long, device=device) \
            if tiles.row_slots else None
        if tiles.runtime_rows is not None:
            rows = tiles.runtime_rows if rows is None else \
                torch.unique(torch.cat([rows, tiles.runtime_rows]))
        return rows if rows is None or rows.numel() else None

    def dense_rows(self, q, k, v, mask, rows: Tensor, heads: int) -> Tensor:
        """The queries ``rows`` against every key, exactly: ``(B, H, G, hd)``."""
        S, device = k.shape[2], q.device
        b = torch.arange(mask._batch(), device=device).view(-1, 1, 1, 1)
        h = torch.arange(heads, device=device).view(1, heads, 1, 1)
        allowed = mask.allows(b, h, rows.view(1, 1, -1, 1),
                              torch.arange(S, device=device).view(1, 1, 1, S), S, S)
        m = torch.zeros(allowed.shape, dtype=q.dtype, device=device).masked_fill(
            ~allowed, torch.finfo(q.dtype).min)
        y = F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=m, scale=self.scale,
                                           dropout_p=self.dropout if self.training else 0.0)
        return y * allowed.any(-1, keepdim=True).to(y.dtype)
