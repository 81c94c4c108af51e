"""The sparse attention module: the pattern on the mask, a kernel per implementation.

:class:`SparseAttention` extends the stack's mask with its pattern
(``mask.with_pattern``: one shared lowering per pattern and forward, however
many layers use it) and hands it to :meth:`kernel`, which each implementation
overrides: ``reference`` (the dense mask, the definition), ``sdpa`` (the
additive mask), ``flex`` (a ``BlockMask``), ``blocked`` (:mod:`.blocked`).

Decoding: a pattern that reaches a bounded distance back (a window, blocks,
leading global tokens) keeps a :class:`~txdsl.sdk.cache.RingKV`; the others
keep every key (:class:`~txdsl.sdk.cache.StaticKV`). Global positions may also
come from the model input ``global_attention_mask`` (``state.inputs``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from txdsl.sdk.attention import Attention, repeat_kv, softmax_attention
from txdsl.sdk.cache import RingKV
from txdsl.sdk.mask import AttentionMask

from . import patterns as P

GLOBAL_INPUT = "global_attention_mask"


def bind(atom: Any, S: int, causal: bool = False) -> Any:
    """An atom that needs the key count (a ring, global positions from the end) gets it."""
    if isinstance(atom, P.Global) and atom.last:
        return dataclasses.replace(atom, length=S)
    if isinstance(atom, P.Local) and atom.ring_length == -1:
        return dataclasses.replace(atom, ring_length=S)
    if isinstance(atom, P.Random):
        return atom.bound(S, causal)
    if isinstance(atom, P.Union):
        return P.Union(tuple(bind(a, S, causal) for a in atom.parts))
    return atom


def mask_causal_key(causal: bool) -> str:
    return "causal" if causal else "bidirectional"


class SparseAttention(Attention):
    """Exact softmax attention over the keys a position pattern allows (impl ``reference``)."""

    global_rows_elsewhere = False  # True: global rows are computed apart (Longformer, blocked)

    def __init__(self, *, parts: list[Any], ring: tuple[int, int] | None = None,
                 tile: int = 32, **base: Any):
        super().__init__(**base)
        self.parts = tuple(parts)
        self.ring = ring  # (window, sinks) of a bounded decode state, or None
        self.tile = tile
        self.head_dependent = any(isinstance(p, P.PerHead) or
                                  (isinstance(p, P.Union) and
                                   any(isinstance(q, P.PerHead) for q in p.parts))
                                  for p in parts)

    @classmethod
    def from_args(cls, args: Any, ctx: Any) -> "SparseAttention":
        reach, sinks = args.reach_and_sinks(ctx.dims)
        return cls(parts=args.parts(ctx.dims), ring=None if reach is None else (reach, sinks),
                   tile=args.tile(), **cls.projections(args, ctx))

    # ------------------------------------------------------------------ pattern

    def pattern(self, S: int, state: Any, causal: bool = False) -> tuple[tuple, Any]:
        """``(key, predicate)`` of this module's pattern for ``S`` keys (with the run-time
        global positions of ``state``, if any)."""
        atoms = [bind(a, S, causal) for a in self.parts]
        key: tuple = ("sparse", tuple(atoms) if all(dataclasses.is_dataclass(a) for a in atoms)
                      else id(self), S, mask_causal_key(causal))
        given = state.inputs.get(GLOBAL_INPUT) if state is not None else None
        if given is not None:
            atoms.append(P.GlobalInput(given))
            key = key + (id(given),)
        return key, P.Union(tuple(atoms))

    def sparse_mask(self, mask: AttentionMask, S: int, state: Any) -> tuple[AttentionMask, Any]:
        key, union = self.pattern(S, state, mask.causal)
        return mask.with_pattern(key, union), union

    # -------------------------------------------------------------------- state

    def new_state(self, batch: int, capacity: int, *, device: Any = None,
                  dtype: torch.dtype = torch.float32) -> Any:
        if self.ring is None:
            return super().new_state(batch, capacity, device=device, dtype=dtype)
        window, sinks = self.ring
        return RingKV(batch, self.kv_heads, window, self.head_dim, sinks=sinks, device=device,
                      dtype=dtype)

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: AttentionMask,
                position: Any = None, cache: Any = None, state: Any = None) -> Tensor:
        if not isinstance(cache, RingKV) or memory is not None:
            return super().forward(x, memory, mask=mask, position=position, cache=cache,
                                   state=state)
        if state is not None and state.inputs.get(GLOBAL_INPUT) is not None:
            raise ValueError("global_attention_mask can't be used with a cache: a ring-buffer "
                             "decode state keeps only the window and the leading global tokens")
        B, T, _ = x.shape
        q = self.split(self.q_proj(x), self.heads)  # (B, H, T, hd)
        k = self.split(self.k_proj(x), self.kv_heads)
        v = self.split(self.v_proj(x), self.kv_heads)
        slots = mask.q_slots if mask.q_slots is not None else torch.arange(T, device=x.device)
        if position is not None:
            q, k = position.rotate(q, k)
        k, v, key_slots = cache.update(k, v, slots)  # (B, H_kv, R + T, hd), (R + T,)
        y = self.attend_ring(q, k, v, key_slots, mask, position)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d_model)

    def attend_ring(self, q: Tensor, k: Tensor, v: Tensor, key_slots: Tensor,
                    mask: AttentionMask, position: Any) -> Tensor:
        """Attention over a ring's keys, whose slots are ``key_slots`` (``-1``: empty)."""
        T, S = q.shape[2], k.shape[2]
        real = key_slots >= 0
        padding = None
        if mask.key_padding is not None:  # the stack's (B, capacity) padding, at the keys' slots
            padding = mask.key_padding[:, key_slots.clamp(min=0)] & real
        else:
            padding = real[None].expand(q.shape[0], S)
        union = P.Union(tuple(self.parts))
        ks = key_slots

        def ring_pattern(b, h, i, j):  # i: the query's index among the keys, j: the key's
            qs, kslot = ks[i], ks[j]
            return (kslot <= qs) & union(b, h, qs, kslot)

        ring_mask = AttentionMask(key_padding=padding).with_pattern(("ring",), ring_pattern)
        if position is not None and position.bias is not None:
            raise ValueError("a score bias (ALiBi, T5) with a ring-buffer decode state is not "
                             "supported: the bias is laid out by slot, the ring is not")
        groups = self.heads // self.kv_heads
        y = softmax_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), mask=ring_mask,
                              scale=self.scale)  # (B, H, T, hd)
        return y * ring_mask.dense(T, S, device=q.device).any(-1, keepdim=True).to(y.dtype)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask: AttentionMask,
               position: Any, state: Any) -> Tensor:
        S = k.shape[2]
        sparse, union = self.sparse_mask(mask, S, state)
        return self.kernel(q, k, v, mask=sparse, union=union, position=position)

    def kernel(self, q: Tensor, k: Tensor, v: Tensor, *, mask: AttentionMask, union: Any,
               position: Any) -> Tensor:
        """The reference: the dense mask (``(B|1, H|1, T, S)``), explicit softmax."""
        groups = self.heads // self.kv_heads
        bias = position.bias if position is not None else None
        T, S = q.shape[2], k.shape[2]
        heads = self.heads if self.head_dependent else 1
        allowed = mask.dense(T, S, device=q.device, heads=heads)  # (B|1, H|1, T, S)
        if allowed is not None and self.head_dependent:  # a per-head pattern: the dense mask has a head axis
            extra = torch.zeros(allowed.shape, dtype=torch.float32, device=q.device).masked_fill(
                ~allowed, torch.finfo(torch.float32).min)
            bias = extra if bias is None else bias.float() + extra
            mask = AttentionMask()
        y = softmax_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), mask=mask,
                              bias=bias, scale=self.scale, dropout=self.dropout,
                              training=self.training)  # (B, H, T, hd)
        if allowed is None:  # cross-attention without padding: every key is seen
            return y
        return y * allowed.any(-1, keepdim=True).to(y.dtype)  # a query seeing nothing: 0

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pattern={self.parts}"


class SDPASparseAttention(SparseAttention):
    """The pattern as SDPA's additive mask (impl ``sdpa``): fused, dense in memory (T x S)."""

    def kernel(self, q, k, v, *, mask, union, position):
        T, S = q.shape[2], k.shape[2]
        heads = self.heads if self.head_dependent else 1
        attn_mask = mask.additive(T, S, q.dtype, device=q.device, heads=heads)
        if position is not None and position.bias is not None:
            allowed = mask.dense(T, S, device=q.device, heads=heads)
            attn_mask = position.bias.to(q.dtype).masked_fill(~allowed,
                                                              torch.finfo(q.dtype).min)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, scale=self.scale,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.heads != self.kv_heads)  # (B, H, T, hd)
        allowed = mask.dense(T, S, device=q.device, heads=heads)
        if allowed is None:  # cross-attention without padding: every key is seen
            return y
        return y * allowed.any(-1, keepdim=True).to(y.dtype)  # a query seeing nothing: 0


class FlexSparseAttention(SparseAttention):
    """The pattern as a FlexAttention ``BlockMask`` (impl ``flex``): tiles with no allowed
    pair are skipped. On CPU gradient-free only (torch 2.13 has no CPU backward)."""

    def kernel(self, q, k, v, *, mask, union, position):
        from torch.nn.attention.flex_attention import flex_attention

        if q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad:
            raise RuntimeError("sparse attention impl 'flex' has no backward on CPU in torch "
                               f"{torch.__version__}; build with --kernel attention=blocked "
                               "to train, or run under torch.no_grad()")
        T, S = q.shape[2], k.shape[2]
        heads = self.heads if self.head_dependent else 1
        block_mask = mask.block_mask(T, S, device=q.device, heads=heads)
        score_mod = position.score_mod() if position is not None else None
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        return flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask,
                              scale=self.scale, enable_gqa=self.heads != self.kv_heads)
