"""Longformer attention (Beltagy et al. 2020, https://arxiv.org/abs/2004.05150).

Two computations, as Hugging Face's ``LongformerSelfAttention``:

- every query attends, with the usual ``q_proj``/``k_proj``/``v_proj``, to the
  keys in its window and to the global keys (each key once);
- a *global* query (``global_tokens``, ``positions``, or the model input
  ``global_attention_mask``) attends instead to every key, with its own
  projections ``q_global``/``k_global``/``v_global``; its row replaces the
  first one. Both share the output projection.

Global rows are computed for all queries and selected (dense in ``T x S``):
the window part is what the chosen implementation makes sparse.
"""

from __future__ import annotations

from typing import Any

import torch
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
            return cls(parts=args.parts(ctx.dims), ring=None, tile=args.tile(),
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
            rows = self.global_rows(T, T, state, x.device)
            if rows is None or (not torch.compiler.is_compiling() and not bool(rows.any())):
                return local
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

    Longformer.__name__ = Longformer.__qualname__ = f"Longformer{base.__name__}"
    return Longformer


LongformerReference = longformer(SparseAttention)
LongformerSDPA = longformer(SDPASparseAttention)
LongformerBlocked = longformer(BlockedSparseAttention)
LongformerFlex = longformer(FlexSparseAttention)
