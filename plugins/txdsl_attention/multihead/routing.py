"""Routing-by-agreement aggregation of the heads (Li, Yang, Dou, Wang, Lyu, Tu 2019,
https://arxiv.org/abs/1904.03100).

Instead of concatenating the heads' outputs, each head's output at a
position is an input capsule ``u_h`` ``(head_dim,)``; it votes for ``N``
output capsules through ``W_{hn}`` ``(head_dim, capsule_dim)``, and dynamic
routing (Sabour et al. 2017) decides how much each vote counts:

    V_hn = u_h W_hn;  b_hn = 0
    repeat iterations:  C_hn = softmax_n(b_hn);  s_n = sum_h C_hn V_hn
                        o_n = squash(s_n);  b_hn += o_n . V_hn
    out = [o_1 .. o_N] W_O            squash(s) = |s|^2 / (1 + |s|^2) s / |s|

The routing replaces the output projection (a built part: ``out_proj``), so
attention itself is full softmax attention, with grouped-query attention,
caching and positions unchanged.
"""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import Dims
from txdsl.sdk.args import linear_params

from ..priors.scores import ScoresArgs, ScoresAttention


def squash(s: Tensor, dim: int = -1) -> Tensor:
    n2 = (s * s).sum(dim, keepdim=True)
    return s * (n2 / (1.0 + n2)) / torch.sqrt(n2 + 1e-9)


class RoutingArgs(ScoresArgs):
    """Multi-head attention whose heads are aggregated by routing-by-agreement (Li et al. 2019)."""

    capsules: PositiveInt | None = Field(default=None, description="N, output capsules "
                                         "(default heads)")
    capsule_dim: PositiveInt | None = Field(default=None, description="each output capsule's "
                                            "width (default head_dim)")
    iterations: PositiveInt = Field(default=3, description="routing iterations")

    def shape(self, dims: Dims) -> tuple[int, int]:
        return self.capsules or self.heads, self.capsule_dim or self.head_size(dims)

    def param_count(self, dims: Dims) -> int:
        hd, d, n, cd = self.head_size(dims), dims.width, *self.shape(dims)
        plain_out = linear_params(self.heads * hd, d, self.bias)
        votes = self.heads * n * hd * cd
        return super().param_count(dims) - plain_out + votes + linear_params(n * cd, d, self.bias)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        n, cd = self.shape(dims)
        return 2 * self.param_count(dims) + 2 * 2 * self.heads * self.head_size(dims) * seq_len \
            + self.iterations * 4 * self.heads * n * cd


class RoutingAggregation(nn.Module):
    """``(B, T, H*hd)`` concatenated heads -> ``(B, T, d_model)`` by dynamic routing."""

    def __init__(self, *, heads: int, head_dim: int, capsules: int, capsule_dim: int,
                 iterations: int, out: nn.Module):
        super().__init__()
        self.heads, self.head_dim, self.iterations = heads, head_dim, iterations
        # W_hn ~ N(0, 1): votes of norm ~sqrt(capsule_dim), where squash is near a unit
        # vector; a 1/sqrt(head_dim) start leaves them short and squash (~|s| s) slows training.
        self.votes = nn.Parameter(torch.randn(heads, capsules, head_dim, capsule_dim))
        self.out = out  # W_O: N*capsule_dim -> d_model

    def forward(self, y: Tensor) -> Tensor:
        B, T, _ = y.shape
        dtype = y.dtype  # routing runs in float32 for half inputs (iterated squashes drift)
        work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        u = y.view(B, T, self.heads, self.head_dim).to(work)  # (B, T, H, hd) input capsules
        V = torch.einsum("bthd,hndc->bthnc", u, self.votes.to(work))  # (B, T, H, N, cd)
        b = torch.zeros(V.shape[:4], dtype=V.dtype, device=V.device)  # (B, T, H, N)
        for i in range(self.iterations):
            C = torch.softmax(b, dim=-1)  # each head shares itself among the outputs
            o = squash(torch.einsum("bthn,bthnc->btnc", C, V))  # (B, T, N, cd)
            if i + 1 < self.iterations:
                b = b + torch.einsum("btnc,bthnc->bthn", o, V)
        return self.out(o.reshape(B, T, -1).to(dtype))  # (B, T, d_model)


class RoutingAttention(ScoresAttention):
    """Softmax attention; its ``out_proj`` is a :class:`RoutingAggregation`."""

    @classmethod
    def from_args(cls, args: RoutingArgs, ctx) -> "RoutingAttention":
        parts = cls.projections(args, ctx)
        n, cd = args.shape(ctx.dims)
        parts["out_proj"] = RoutingAggregation(
            heads=args.heads, head_dim=args.head_size(ctx.dims), capsules=n, capsule_dim=cd,
            iterations=args.iterations, out=nn.Linear(n * cd, ctx.dims.width, bias=args.bias))
        return cls(**parts)
