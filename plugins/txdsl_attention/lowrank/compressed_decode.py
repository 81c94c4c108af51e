"""Decoding causal memory-compressed attention (``compressed``) with a state of its own.

A query in block ``b`` reads the compressed slots of blocks ``j < b`` and the raw
keys of its own block up to itself (see :mod:`.compressed`), so a decoding step
needs of the past only

- every finished block's slot, ``(B, H_kv, N, hd)`` for keys and values
  (``N = (capacity - 1) // stride + 2``: one slot per block, and one spare), and
  whether it holds a real key, ``(B, N)`` (an all-padding block's slot is masked);
- the raw keys and values of the block being filled, ``(B, H_kv, stride, hd)``,
  and which of them are real (not padding), ``(B, stride)``.

That is ``1 / stride`` of a KV cache plus one block. A step of ``T`` tokens at
positions ``p0 .. p0 + T - 1`` (any ``T``, from any position: prefill chunks and
single tokens alike) joins the held block's keys with its own, recomputes the slot
of every block it touches (a block it leaves unfinished is recomputed by the next
step, which continues it, before any query can see it) and keeps the raw keys of
the block the next position falls in. Every shape depends on ``T`` and
``stride`` only, never on the position (positions are tensors), so a compiled
decode step compiles once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from txdsl.sdk.attention import AttentionMask, masked_fill_value, repeat_kv


class CompressedState:
    """Finished blocks' slots plus the block being filled, for ``batch`` rows."""

    def __init__(self, batch: int, kv_heads: int, head_dim: int, stride: int, capacity: int, *,
                 device=None, dtype: torch.dtype = torch.float32):
        n = (max(capacity, 1) - 1) // stride + 2
        self.stride = stride
        self.slot_k = torch.zeros(batch, kv_heads, n, head_dim, device=device, dtype=dtype)
        self.slot_v = torch.zeros_like(self.slot_k)
        self.raw_k = torch.zeros(batch, kv_heads, stride, head_dim, device=device, dtype=dtype)
        self.raw_v = torch.zeros_like(self.raw_k)
        self.slot_real = torch.zeros(batch, n, device=device, dtype=dtype)
        self.raw_real = torch.zeros(batch, stride, device=device, dtype=dtype)

    def reorder(self, index: Tensor) -> None:
        for name in ("slot_k", "slot_v", "slot_real", "raw_k", "raw_v", "raw_real"):
            setattr(self, name, getattr(self, name)[index])

    def grow(self, capacity: int) -> None:
        extra = (capacity - 1) // self.stride + 2 - self.slot_k.shape[2]
        if extra > 0:
            self.slot_k = F.pad(self.slot_k, (0, 0, 0, extra))
            self.slot_v = F.pad(self.slot_v, (0, 0, 0, extra))
            self.slot_real = F.pad(self.slot_real, (0, extra))

    def nbytes(self) -> int:
        return sum(t.nbytes for t in (self.slot_k, self.slot_v, self.slot_real, self.raw_k,
                                      self.raw_v, self.raw_real))


def _gather(seq: Tensor, index: Tensor, valid: Tensor) -> Tensor:
    """``seq`` ``(B, H, S, hd)`` at positions ``index`` ``(n,)``, zero where not ``valid``."""
    picked = seq.index_select(2, index.clamp(0, seq.shape[2] - 1))
    return picked * valid[None, None, :, None].to(seq.dtype)


def decode_step(attn, q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask,
                cache: CompressedState) -> Tensor:
    """Causal compressed attention of ``T`` new queries ``q`` ``(B, H, T, hd)`` with their
    keys ``k``/``v`` ``(B, H_kv, T, hd)``, continuing ``cache`` (updated in place)."""
    if not mask.causal or mask.patterns:
        raise ValueError("compressed attention decodes its causal form: a bidirectional "
                         "stack or a mask pattern can't decode with its state (run without "
                         "a cache)")
    B, T, s = q.shape[0], q.shape[2], attn.stride
    dev, groups = q.device, attn.heads // attn.kv_heads
    pos = mask.q_slots if mask.q_slots is not None else torch.arange(T, device=dev)  # (T,)
    real = (mask.key_padding[:, pos].to(k.dtype) if mask.key_padding is not None
            else torch.ones(B, T, device=dev, dtype=k.dtype))  # (B, T)
    k, v = k * real[:, None, :, None], v * real[:, None, :, None]  # padded keys: zero
    p0, last = pos[0], pos[-1]
    base = p0 // s * s  # the held block's first position
    # One sequence of positions: the held block (base + i, real below p0), then this step's.
    seq_k = torch.cat([cache.raw_k.to(k.dtype), k], dim=2)  # (B, H_kv, s + T, hd)
    seq_v = torch.cat([cache.raw_v.to(v.dtype), v], dim=2)
    seq_real = torch.cat([cache.raw_real.to(real.dtype), real], dim=1)  # (B, s + T)
    held = base + torch.arange(s, device=dev)
    seq_pos = torch.cat([held, pos])  # (s + T,)
    seq_ok = torch.cat([held < p0, torch.ones(T, dtype=torch.bool, device=dev)])

    def index_of(p: Tensor) -> Tensor:  # a position's index in the sequence
        return torch.where(p < p0, p - base, s + p - p0)

    # The slots of every block this step touches, written in place.
    blocks = p0 // s + torch.arange((T - 1) // s + 2, device=dev)  # (M,)
    at = (blocks[:, None] * s + torch.arange(s, device=dev)).reshape(-1)  # (M s,)
    ok = (at <= last) & (at >= base)
    for conv, seq, store in ((attn.conv_k, seq_k, cache.slot_k), (attn.conv_v, seq_v,
                                                                   cache.slot_v)):
        store.index_copy_(2, blocks, attn.compress(conv, _gather(seq, index_of(at), ok))
                          .to(store.dtype))
    held_real = seq_real.index_select(1, index_of(at).clamp(0, s + T - 1)) * ok.to(real.dtype)
    cache.slot_real.index_copy_(1, blocks, held_real.view(B, -1, s).amax(-1)
                                .to(cache.slot_real.dtype))
    # The queries: slots of earlier blocks, raw keys of the own block up to the query.
    qb = pos[:, None] // s  # (T, 1)
    n = cache.slot_k.shape[2]
    see_slot = (torch.arange(n, device=dev) < qb) & (cache.slot_real[:, None] > 0)  # (B, T, N)
    see_raw = seq_ok & (seq_pos // s == qb) & (seq_pos <= pos[:, None])  # (T, s + T)
    see = torch.cat([see_slot,
                     see_raw[None] & (seq_real[:, None, :] > 0)], dim=-1)[:, None]
    bias = torch.zeros(see.shape, dtype=q.dtype, device=dev).masked_fill(
        ~see, masked_fill_value(q.dtype))  # (B, 1, T, N + s + T)
    keys = repeat_kv(torch.cat([cache.slot_k.to(q.dtype), seq_k.to(q.dtype)], dim=2), groups)
    vals = repeat_kv(torch.cat([cache.slot_v.to(q.dtype), seq_v.to(q.dtype)], dim=2), groups)
    y = F.scaled_dot_product_attention(q, keys, vals, attn_mask=bias, scale=attn.scale)
    # Keep the raw keys of the block the next position falls in.
    nxt = (last + 1) // s * s + torch.arange(s, device=dev)
    keep = nxt <= last
    idx = index_of(nxt)
    cache.raw_k.copy_(_gather(seq_k, idx, keep))
    cache.raw_v.copy_(_gather(seq_v, idx, keep))
    cache.raw_real.copy_(seq_real.index_select(1, idx.clamp(0, s + T - 1)) * keep.to(real.dtype))
    return y  # (B, H, T, hd)
