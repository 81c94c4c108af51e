"""Longformer attention (Beltagy et al. 2020, https://arxiv.org/abs/2004.05150).

Two computations, as Hugging Face's ``LongformerSelfAttention``:

- every query attends, with the usual ``q_proj``/``k_proj``/``v_proj``, to the
  keys in its window and to the global keys (each key once);
- a *global* query (``global_tokens``, ``positions``, or the model input
  ``global_attention_mask``) attends instead to every key, with its own
  projections ``q_global``/``k_global``/``v_global``; its row replaces the
  first one. Both share the output projection.

``reference``, ``sdpa`` and ``flex`` compute global rows for all queries and
select them (dense in ``T x S``, the definition); ``blocked`` computes only the
global rows (``G x S``; a run-time ``global_attention_mask`` in eager mode, a
static one always; RoPE and run-time globals under ``torch.compile`` fall back
to the dense rows), and its window part skips them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from txdsl.sdk.attention import repeat_kv, softmax_attention
from txdsl.sdk.mask import AttentionMask

from . import patterns as P
from .blocked import BlockedSparseAttention
from .module import GLOBAL_INPUT, FlexSparseAttention, SDPASparseAttention, SparseAttention


def longformer(base: type) -> type:
    """A Longformer module on top of the sparse implementation ``base``."""

    class Longformer(base):  # type: ignore[misc, valid-type]
        __doc__ = f"Longformer attention, window part by {base.__name__}."

        def __init__(self, *, q_global: nn.Module, k_global: nn.Module, v_global: nn.Module,
                     **rest: Any):
            super().__init__(**rest)
            self.q_global, self.k_global, self.v_global = q_global, k_global, v_global

        @classmethod
        def from_args(cls, args: Any, ctx: Any):
            parts = cls.projections(args, ctx)
            d, h, hkv = ctx.dims.width, args.heads, args.n_kv_heads()
            hd = args.head_size(ctx.dims)
            reach, sinks = args.reach_and_sinks(ctx.dims)
            return cls(parts=args.parts(ctx.dims), tile=args.tile(),
                       ring=None if reach is None else (reach, sinks),
                       q_global=nn.Linear(d, h * hd, bias=args.bias),
                       k_global=nn.Linear(d, hkv * hd, bias=args.bias),
                       v_global=nn.Linear(d, hkv * hd, bias=args.bias), **parts)

        def global_rows(self, T: int, S: int, state: Any, device: Any) -> Tensor | None:
            """``(B|1, T)`` bool: which queries are global (``None``: none can be)."""
            statics = [p for p in self.parts if isinstance(p, P.Global)]
            given = state.inputs.get(GLOBAL_INPUT) if state is not None else None
            if not statics and given is None:
                return None
            slots = torch.arange(S - T, S, device=device)
            rows = torch.zeros(1, T, dtype=torch.bool, device=device)
            for g in statics:
                rows = rows | g.is_global(slots)[None]
            if given is not None:
                rows = rows | given.bool()[:, -T:]
            return rows

        def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: AttentionMask,
                    position: Any = None, cache: Any = None, state: Any = None) -> Tensor:
            local = super().forward(x, memory, mask=mask, position=position, cache=cache,
                                    state=state)  # (B, T, d_model)
            if memory is not None:
                return local
            B, T, _ = x.shape
            if cache is not None:
                return self.decode_global_rows(x, local, mask, position, state)
            rows = self.global_rows(T, T, state, x.device)
            if rows is None or (not torch.compiler.is_compiling() and not bool(rows.any())):
                return local
            index = self.global_index(state, T, x.device) if self.global_rows_elsewhere and \
                position is None else None
            if index is not None:
                return self.sparse_global_rows(x, local, rows, index, mask)
            q = self.split(self.q_global(x), self.heads)  # (B, H, T, hd)
            k = self.split(self.k_global(x), self.kv_heads)
            v = self.split(self.v_global(x), self.kv_heads)
            if position is not None:
                q, k = position.rotate(q, k)
            groups = self.heads // self.kv_heads
            y = softmax_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), mask=mask,
                                  bias=position.bias if position is not None else None,
                                  scale=self.scale, dropout=self.dropout,
                                  training=self.training)  # (B, H, T, hd): every key
            glob = self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d_model)
            return torch.where(rows[..., None], glob, local)

        def decode_global_rows(self, x: Tensor, local: Tensor, mask: AttentionMask,
                               position: Any, state: Any) -> Tensor:
            """With a decode state: the ring keeps the window and the leading global tokens'
            keys (ordinary projections); a global query's own-projection keys are not kept,
            so a chunk holding a global query must start at slot 0 (the prompt)."""
            if state is not None and state.inputs.get(GLOBAL_INPUT) is not None:
                raise ValueError("global_attention_mask can't be used with a decode state: "
                                 "use global_tokens (the leading positions) in a causal stack")
            B, T, _ = x.shape
            slots = mask.q_slots if mask.q_slots is not None else \
                torch.arange(T, device=x.device)
            rows = torch.zeros(T, dtype=torch.bool, device=x.device)
            for g in (p for p in self.parts if isinstance(p, P.Global)):
                rows = rows | g.is_global(slots)
            if torch.compiler.is_compiling() or not bool(rows.any()):
                return local  # decode steps past the global tokens: the window part only
            if int(slots[0]) != 0:
                raise ValueError("a Longformer global query can only be computed in a chunk "
                                 "that starts at position 0 (its keys of the global "
                                 "projections are not cached): give the global tokens in the "
                                 "prompt")
            pad = mask.key_padding[:, :T] if mask.key_padding is not None else None
            fresh = AttentionMask(causal=mask.causal, key_padding=pad)
            q = self.split(self.q_global(x), self.heads)  # (B, H, T, hd)
            k = self.split(self.k_global(x), self.kv_heads)
            v = self.split(self.v_global(x), self.kv_heads)
            if position is not None:
                q, k = position.rotate(q, k)
            groups = self.heads // self.kv_heads
            y = softmax_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), mask=fresh,
                                  scale=self.scale)  # (B, H, T, hd)
            glob = self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d_model)
            return torch.where(rows[None, :, None], glob, local)

        def global_index(self, state: Any, T: int, device: Any) -> Tensor | None:
            """``(G,)`` the queries global in any row; ``None`` where that depends on data
            under ``torch.compile``."""
            given = state.inputs.get(GLOBAL_INPUT) if state is not None else None
            if given is not None and torch.compiler.is_compiling():
                return None
            slots: set[int] = set()
            for g in (p for p in self.parts if isinstance(p, P.Global)):
                slots |= set(range(min(g.first, T))) | {p for p in g.positions if p < T}
                slots |= set(range(max(T - g.last, 0), T)) if g.last else set()
            index = torch.tensor(sorted(slots), dtype=torch.long, device=device)
            if given is not None:
                index = torch.unique(torch.cat([index, given.bool()[:, -T:].any(0).nonzero()
                                                .flatten()]))
            return index

        def sparse_global_rows(self, x: Tensor, local: Tensor, rows: Tensor, index: Tensor,
                               mask: AttentionMask) -> Tensor:
            """Only the global queries ``index`` with the global projections, every key."""
            B, T, _ = x.shape
            q = self.split(self.q_global(x[:, index]), self.heads)  # (B, H, G, hd)
            k = self.split(self.k_global(x), self.kv_heads)  # (B, H_kv, T, hd)
            v = self.split(self.v_global(x), self.kv_heads)
            groups = self.heads // self.kv_heads
            b = torch.arange(mask._batch(), device=x.device).view(-1, 1, 1, 1)
            allowed = mask.allows(b, torch.zeros(1, 1, 1, 1, dtype=torch.long, device=x.device),
                                  index.view(1, 1, -1, 1),
                                  torch.arange(T, device=x.device).view(1, 1, 1, T), T, T)
            bias = torch.zeros(allowed.shape, dtype=q.dtype, device=x.device).masked_fill(
                ~allowed, torch.finfo(q.dtype).min)
            y = F.scaled_dot_product_attention(
                q, repeat_kv(k, groups), repeat_kv(v, groups), attn_mask=bias, scale=self.scale,
                dropout_p=self.dropout if self.training else 0.0)  # (B, H, G, hd)
            y = y * allowed.any(-1, keepdim=True).to(y.dtype)
            glob = self.out_proj(y.transpose(1, 2).reshape(B, index.numel(), -1))  # (B, G, d)
            keep = rows[:, index].expand(B, -1)[..., None]  # (B, G, 1): global in this row
            return local.index_copy(1, index, torch.where(keep, glob, local[:, index]))

    Longformer.__name__ = Longformer.__qualname__ = f"Longformer{base.__name__}"
    return Longformer


LongformerReference = longformer(SparseAttention)
LongformerSDPA = longformer(SDPASparseAttention)
LongformerBlocked = longformer(BlockedSparseAttention)
LongformerBlocked.global_rows_elsewhere = True  # its window part skips the global rows
LongformerFlex = longformer(FlexSparseAttention)
