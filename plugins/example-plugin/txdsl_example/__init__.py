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

This module is a complete third-party txdsl plugin: an argument model, a
module on the attention contract's base class (:class:`txdsl.sdk.Attention`:
it overrides only ``attend``; masks, positions and the decode state are
explicit), and a hook.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from txdsl.hookspecs import hookimpl
from txdsl.sdk import ArgError, AttentionArgs, BuildContext, Dims
from txdsl.sdk.attention import Attention, repeat_kv

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


class CosineAttention(Attention):
    """The contract's base class does projections, heads, GQA, positions and the
    decode state; cosine attention only changes how scores are computed."""

    def __init__(self, *, temperature: float, eps: float = 1e-6, **parts):
        super().__init__(**parts)
        self.temperature = nn.Parameter(torch.full((self.heads,), float(temperature)))  # g, (H,)
        self.eps = eps

    @classmethod
    def from_args(cls, args: CosineArgs, ctx: BuildContext) -> "CosineAttention":
        return cls(temperature=args.initial_temperature(ctx.dims),
                   **cls.projections(args, ctx))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        # q (B, H, T, hd); k, v (B, H_kv, S, hd): cached keys first, RoPE already applied
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, S, hd)
        T, S = q.shape[2], k.shape[2]
        work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        qn = F.normalize(q.to(work), dim=-1, eps=self.eps)  # unit rows
        kn = F.normalize(k.to(work), dim=-1, eps=self.eps)
        g = self.temperature.to(work)[None, :, None, None]  # (1, H, 1, 1)
        scores = g * (qn @ kn.transpose(-2, -1))  # (B, H, T, S)
        if position is not None and position.bias is not None:
            scores = scores + position.bias.to(work)  # (B|1, H, T, S)
        allowed = mask.dense(T, S, device=q.device)  # (B|1, 1, T, S) bool, or None
        if allowed is not None:  # finite min: a fully masked row is uniform, not NaN
            scores = scores.masked_fill(~allowed, torch.finfo(work).min)
        weights = F.dropout(scores.softmax(dim=-1), p=self.dropout, training=self.training)
        return (weights @ v.to(work)).to(q.dtype)  # (B, H, T, hd)


@hookimpl
def register_attention(register):
    register(name="cosine", args=CosineArgs, build=CosineAttention.from_args)
