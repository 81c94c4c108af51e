"""Cosine attention: query-key normalisation with a learned temperature.

Henry et al. 2020, "Query-Key Normalization for Transformers",
https://arxiv.org/abs/2010.04245. Per head ``h``::

    scores[i, j] = g[h] * (q_i / |q_i|) . (k_j / |k_j|)  + bias[i, j]
    scores       = where(allowed, scores, min)      # causal and padding masks
    out_i        = sum_j softmax(scores)[i, j] v_j

Cosine similarities lie in [-1, 1], so the logits are bounded by ``g``: the
softmax can't saturate however large ``q`` and ``k`` grow. ``g`` is learned,
one per head here (the paper has one per layer), initialised to
``log2(L^2 - L)`` for the context length ``L``.

This module is a complete third-party txdsl plugin: an argument model, an
``nn.Module`` following the attention call contract (:mod:`txdsl.sdk.attention`:
masks, positions and the KV cache are explicit arguments), and a hook.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from txdsl.hookspecs import hookimpl
from txdsl.sdk import ArgError, AttentionArgs, BuildContext, Dims
from txdsl.sdk.attention import AttentionMask, KVCache, PositionContext

__version__ = "0.1.0"


class CosineArgs(AttentionArgs):
    """Cosine attention (Henry et al. 2020, QK-norm): scores g * cos(q, k), g learned per head."""

    temperature: float | None = Field(default=None, gt=0.0)  # initial g; None: log2(L^2 - L)

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if self.scale is not None:
            raise ArgError("cosine attention learns its scale: 'scale' does not apply",
                           arg="scale", hint="set the initial value with 'temperature' instead")

    def initial_temperature(self, dims: Dims) -> float:
        if self.temperature is not None:
            return self.temperature
        L = dims.context
        return math.log2(L * L - L) if L and L > 1 else 10.0

    def param_count(self, dims: Dims) -> int:
        return super().param_count(dims) + self.heads  # + one temperature per head


class CosineAttention(nn.Module):
    def __init__(self, *, heads: int, kv_heads: int, head_dim: int, q_proj: nn.Module,
                 k_proj: nn.Module, v_proj: nn.Module, out_proj: nn.Module,
                 temperature: float, dropout: float = 0.0, eps: float = 1e-6):
        super().__init__()
        if heads % kv_heads:
            raise ValueError(f"heads ({heads}) must be divisible by kv_heads ({kv_heads})")
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = q_proj, k_proj, v_proj, out_proj
        self.temperature = nn.Parameter(torch.full((heads,), float(temperature)))  # g, (H,)
        self.dropout, self.eps = dropout, eps

    @classmethod
    def from_args(cls, args: CosineArgs, ctx: BuildContext) -> "CosineAttention":
        args.check(ctx.dims)
        d, hd = ctx.dims.width, args.head_size(ctx.dims)
        h, h_kv = args.heads, args.n_kv_heads()
        return cls(heads=h, kv_heads=h_kv, head_dim=hd,
                   q_proj=nn.Linear(d, h * hd, bias=args.bias),
                   k_proj=nn.Linear(d, h_kv * hd, bias=args.bias),
                   v_proj=nn.Linear(d, h_kv * hd, bias=args.bias),
                   out_proj=nn.Linear(h * hd, d, bias=args.bias),
                   temperature=args.initial_temperature(ctx.dims), dropout=args.dropout)

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
                q, k = position.rotate(q, k)  # rotations keep norms: RoPE composes with QK-norm
            if cache is not None:
                k, v = cache.append(k, v)  # (B, H_kv, S, hd)
        elif cache is not None and cache.k is not None:  # cross-attention, memory seen before
            k, v = cache.k, cache.v  # type: ignore[assignment]
        else:  # cross-attention over the memory
            k = self._split(self.k_proj(memory), self.kv_heads)  # (B, H_kv, S, hd)
            v = self._split(self.v_proj(memory), self.kv_heads)
            if cache is not None:
                cache.store(k, v)
        groups = self.heads // self.kv_heads
        if groups > 1:  # grouped-query: query head h reads kv head h // groups
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)

        work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        qn = F.normalize(q.to(work), dim=-1, eps=self.eps)  # (B, H, T, hd), unit rows
        kn = F.normalize(k.to(work), dim=-1, eps=self.eps)  # (B, H, S, hd)
        g = self.temperature.to(work)[None, :, None, None]  # (1, H, 1, 1)
        scores = g * (qn @ kn.transpose(-2, -1))  # (B, H, T, S)
        if position is not None and position.bias is not None:
            scores = scores + position.bias.to(work)  # (1|B, H, T, S)
        allowed = mask.dense(T, k.shape[2], device=x.device)  # (B|1, 1, T, S) or None
        if allowed is not None:  # finite min: a fully masked row is uniform, not NaN
            scores = scores.masked_fill(~allowed, torch.finfo(work).min)
        weights = F.dropout(scores.softmax(dim=-1), p=self.dropout, training=self.training)
        y = (weights @ v.to(work)).to(q.dtype)  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.heads * self.head_dim)
        return self.out_proj(y)  # (B, T, d_model)

    def extra_repr(self) -> str:
        kv = f", kv_heads={self.kv_heads}" if self.kv_heads != self.heads else ""
        return f"heads={self.heads}{kv}, head_dim={self.head_dim}"


@hookimpl
def register_attention(register):
    register(name="cosine", args=CosineArgs, build=CosineAttention.from_args)
