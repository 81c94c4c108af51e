"""Low-rank parametrisation of the attention projections (the survey's "low-rank
parameterization", Lin et al. 2021, "A Survey of Transformers",
https://arxiv.org/abs/2106.04554, sec. 4.4.1; factored projections as in
Wang et al. 2020, "Structured Pruning of Large Language Models",
https://arxiv.org/abs/1910.04732).

Kind ``lowrank``: exact softmax attention whose q, k, v and output projections
are each a product of two thin matrices, ``W = A B`` with ``A`` ``d x rank``
and ``B`` ``rank x out``, and whose head size may be smaller than
``d_model / heads`` (``head_dim``): the attention matrix has rank at most
``head_dim``, so a wide head is wasted capacity when the length is short.
Everything else (masks, positions, decode state, GQA) is full attention's, and
so are its implementations: ``reference`` (explicit matmuls) and ``sdpa``
(PyTorch's fused kernel, preferred: no ``T x T`` matrix is held), one
parameter layout for both.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import AttentionArgs
from txdsl.sdk.args import ArgError, Dims, linear_params

from ..full import ReferenceAttention
from ..sdpa import SDPAAttention


class LowRankArgs(AttentionArgs):
    """Softmax attention with factored (rank-``rank``) q/k/v/out projections."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk", "bias"})
    example: ClassVar[dict] = {"rank": 4}

    rank: PositiveInt = Field(description="inner size of each factored projection W = A B "
                              "(A: in x rank, no bias; B: rank x out)")

    def check(self, dims: Dims) -> None:
        super().check(dims)
        hd = self.head_size(dims)
        if self.rank >= min(dims.width, self.heads * hd):
            raise ArgError(f"rank ({self.rank}) is not below the projections' sizes "
                           f"(d_model {dims.width}, heads x head_dim {self.heads * hd}): "
                           "the factorisation would save nothing", arg="rank",
                           hint="use full attention, or a smaller rank")

    def param_count(self, dims: Dims) -> int:
        d, hd, r = dims.width, self.head_size(dims), self.rank
        outs = [self.heads * hd, self.n_kv_heads() * hd, self.n_kv_heads() * hd]
        qkv = sum(d * r + linear_params(r, o, self.bias) for o in outs)
        return qkv + self.heads * hd * r + linear_params(r, d, self.bias)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 2 * self.param_count(dims) + 2 * 2 * self.heads * self.head_size(dims) * seq_len


class Factor(nn.Module):
    """One factor of ``W = B A``: ``y = x W_f^T (+ b)``, started as PyTorch's ``nn.Linear``
    default (Kaiming-uniform, ``U(+-1/sqrt(fan_in))``), as a hand-written pair of
    ``nn.Linear`` layers would be. Not an ``nn.Linear`` itself, so the model-wide
    N(0, 0.02) init leaves it alone: two factors each at 0.02 start the product at
    ``0.02^2 sqrt(rank)`` with each factor's gradient scaled by the other's 0.02.

    Measured on the reverse task (tests/plugins/lowrank/test_models.py, 80 steps,
    d_model 64, rank 16, seeds 0/1/2; full attention 0.029/0.032/0.027): both factors
    at N(0, 0.02): 2.785 -> 1.107; the product at std 0.02 split evenly between the
    factors: 0.082/0.084/0.077; at 0.04: 0.038/0.044/0.038; at 0.08: 0.024/0.033/0.030;
    this init (the product at std ~0.042 there; ~0.012 at d_model 768, rank 64):
    see the test."""

    def __init__(self, d_in: int, d_out: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_out, d_in))  # (out, in)
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's reset_parameters
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


def factored(d_in: int, d_out: int, rank: int, bias: bool) -> nn.Sequential:
    """``x -> B(A x)``: a ``d_in -> d_out`` linear map of rank ``rank``."""
    return nn.Sequential(Factor(d_in, rank, False), Factor(rank, d_out, bias))


class FactoredProjections:
    """``from_args`` for an :class:`~txdsl.sdk.attention.Attention` subclass: its q, k, v
    and out projections are :func:`factored`; the subclass's ``attend`` is the kernel."""

    @classmethod
    def from_args(cls, args: LowRankArgs, ctx):
        d, hd, r, b = ctx.dims.width, args.head_size(ctx.dims), args.rank, args.bias
        h, h_kv = args.heads, args.n_kv_heads()
        return cls(heads=h, kv_heads=h_kv, head_dim=hd, q_proj=factored(d, h * hd, r, b),
                   k_proj=factored(d, h_kv * hd, r, b), v_proj=factored(d, h_kv * hd, r, b),
                   out_proj=factored(h * hd, d, r, b), scale=args.scale, dropout=args.dropout)


class LowRankAttention(FactoredProjections, ReferenceAttention):
    """Exact softmax attention with factored projections, explicit matmuls (``reference``)."""


class LowRankSDPAAttention(FactoredProjections, SDPAAttention):
    """The same through PyTorch's fused SDPA kernel (impl ``sdpa``)."""
