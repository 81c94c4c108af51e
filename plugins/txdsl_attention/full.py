"""Full softmax attention (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + bias + mask) V, per head.

One parameter layout, several kernels: :class:`MultiHeadAttention` owns the
projections (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``), the cache and
the position hooks; a subclass supplies only ``_attend`` (the score/softmax/
value product). Every implementation of ``full`` therefore has the same
``state_dict``, and the selection pass can swap one for another.

Grouped-query attention (Ainslie et al. 2023, https://arxiv.org/abs/2305.13245)
and multi-query attention (Shazeer 2019, https://arxiv.org/abs/1911.02150)
come from ``kv_heads`` < ``heads``: query head ``h`` reads key/value head
``h // (heads // kv_heads)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from txdsl.sdk import AttentionArgs, BuildContext
from txdsl.sdk.attention import AttentionMask, KVCache, PositionContext


class FullArgs(AttentionArgs):
    """Exact multi-head softmax attention (Vaswani et al. 2017); GQA/MQA via ``kv_heads``."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk", "bias"})


def repeat_kv(x: Tensor, groups: int) -> Tensor:
    """(B, H_kv, S, hd) -> (B, H_kv * groups, S, hd), each kv head repeated ``groups`` times."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


class MultiHeadAttention(nn.Module):
    """Projections, cache and positions shared by every ``full`` implementation.

    Subclasses implement ``_attend(q, k, v, mask, bias)`` with q ``(B, H, T, hd)``,
    k/v ``(B, H_kv, S, hd)``, ``bias`` ``(1|B, H, T, S)`` or ``None``, returning
    ``(B, H, T, hd)``.
    """

    def __init__(self, *, heads: int, kv_heads: int, head_dim: int, q_proj: nn.Module,
                 k_proj: nn.Module, v_proj: nn.Module, out_proj: nn.Module,
                 scale: float | None = None, dropout: float = 0.0):
        super().__init__()
        if heads % kv_heads:
            raise ValueError(f"heads ({heads}) must be divisible by kv_heads ({kv_heads})")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.scale = scale if scale is not None else head_dim ** -0.5
        self.dropout = dropout
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = q_proj, k_proj, v_proj, out_proj

    @classmethod
    def from_args(cls, args: AttentionArgs, ctx: BuildContext) -> "MultiHeadAttention":
        args.check(ctx.dims)
        d, hd = ctx.dims.width, args.head_size(ctx.dims)
        h, h_kv = args.heads, args.n_kv_heads()
        return cls(
            heads=h, kv_heads=h_kv, head_dim=hd,
            q_proj=nn.Linear(d, h * hd, bias=args.bias),
            k_proj=nn.Linear(d, h_kv * hd, bias=args.bias),
            v_proj=nn.Linear(d, h_kv * hd, bias=args.bias),
            out_proj=nn.Linear(h * hd, d, bias=args.bias),
            scale=args.scale, dropout=args.dropout,
        )

    def _split(self, x: Tensor, heads: int) -> Tensor:  # (B, T, heads*hd) -> (B, heads, T, hd)
        B, T, _ = x.shape
        return x.view(B, T, heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: AttentionMask,
                position: PositionContext | None = None, cache: KVCache | None = None) -> Tensor:
        B, T, _ = x.shape
        q = self._split(self.q_proj(x), self.heads)  # (B, H, T, hd)
        if memory is None:  # self-attention: this step's keys join the cached ones
            k = self._split(self.k_proj(x), self.kv_heads)  # (B, H_kv, T, hd)
            v = self._split(self.v_proj(x), self.kv_heads)
            if position is not None:
                q, k = position.rotate(q, k)
            if cache is not None:
                k, v = cache.append(k, v)  # (B, H_kv, S, hd)
        elif cache is not None and cache.k is not None:  # cross-attention, memory seen before
            k, v = cache.k, cache.v  # type: ignore[assignment]
        else:  # cross-attention: keys and values of the memory, never rotated
            k = self._split(self.k_proj(memory), self.kv_heads)  # (B, H_kv, S, hd)
            v = self._split(self.v_proj(memory), self.kv_heads)
            if cache is not None:
                cache.store(k, v)
        bias = position.bias if position is not None else None
        y = self._attend(q, k, v, mask, bias)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.heads * self.head_dim)
        return self.out_proj(y)  # (B, T, d_model)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask,
                bias: Tensor | None) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        kv = f", kv_heads={self.kv_heads}" if self.kv_heads != self.heads else ""
        return f"heads={self.heads}{kv}, head_dim={self.head_dim}, scale={self.scale:.4g}"


def masked_fill_value(dtype: torch.dtype) -> float:
    """The large finite negative masked scores get: a fully masked row then gives
    uniform weights instead of NaN (as Hugging Face does)."""
    return torch.finfo(dtype).min
