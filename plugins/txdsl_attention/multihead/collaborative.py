"""Collaborative multi-head attention (Cordonnier, Loukas, Jaggi 2020,
https://arxiv.org/abs/2006.16362).

All heads share one query and one key projection ``d_model -> D_k``
(``shared_dim``); head ``h`` reads them through its own mixing vector
``m_h`` ``(D_k,)``:

    score_h(i, j) = (x_i W_Q) diag(m_h) (x_j W_K)^T / sqrt(head_dim)

Values and the output projection are per head as usual. With
``D_k = heads * head_dim`` and ``m_h`` the indicator of head ``h``'s slice
(how the mixing starts here), this is exactly full attention.
The shared keys are stored as ``heads`` slices of ``D_k / heads`` so the
base class's projections, cache and grouping apply unchanged. There is no
grouped-query form: keys are already shared by every head.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, Dims
from txdsl.sdk.args import linear_params
from txdsl.sdk.cache import StaticKV

from ..priors.scores import ScoresArgs, ScoresAttention, no_gqa


class CollaborativeArgs(ScoresArgs):
    """Collaborative heads (Cordonnier et al. 2020): shared query/key projections of width
    ``shared_dim`` and one learned mixing vector per head."""

    accepts: ClassVar[frozenset[str]] = frozenset({"bias"})  # RoPE would rotate mixed slices
    shared_dim: PositiveInt | None = Field(
        default=None, description="D_k, the width of the shared query/key projections "
        "(default heads * head_dim, where one-hot mixing is full attention); divisible by heads")

    def key_dim(self, dims: Dims) -> int:
        return self.shared_dim or self.heads * self.head_size(dims)

    def check(self, dims: Dims) -> None:
        super().check(dims)
        no_gqa(self, "collaborative attention", "every head already reads one shared key")
        if self.key_dim(dims) % self.heads:
            raise ArgError(f"shared_dim ({self.shared_dim}) is not divisible by heads "
                           f"({self.heads})", arg="shared_dim", hint="pick a multiple of heads")

    def param_count(self, dims: Dims) -> int:
        d, hd, dk, h = dims.width, self.head_size(dims), self.key_dim(dims), self.heads
        qk = 2 * linear_params(d, dk, self.bias)
        return qk + linear_params(d, h * hd, self.bias) + linear_params(h * hd, d, self.bias) \
            + h * dk

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 2 * self.param_count(dims) + 2 * self.heads * (self.key_dim(dims)
                                                              + self.head_size(dims)) * seq_len

    def kv_cache_per_token(self, dims: Dims) -> int:
        return self.key_dim(dims) + self.heads * self.head_size(dims)


class CollaborativeAttention(ScoresAttention):
    """Heads that share W_Q, W_K and differ by a mixing vector each."""

    def __init__(self, *, key_dim: int, **parts):
        super().__init__(**parts)
        self.key_dim = key_dim
        mixing = torch.zeros(self.heads, key_dim)  # (H, D_k): one-hot blocks to start
        if key_dim == self.heads * self.head_dim:
            for h in range(self.heads):
                mixing[h, h * self.head_dim:(h + 1) * self.head_dim] = 1.0
        else:
            mixing.normal_(1.0, 0.1)
        self.mixing = nn.Parameter(mixing)

    @classmethod
    def from_args(cls, args: CollaborativeArgs, ctx) -> "CollaborativeAttention":
        parts = cls.projections(args, ctx)
        d, dk = ctx.dims.width, args.key_dim(ctx.dims)
        parts["q_proj"] = nn.Linear(d, dk, bias=args.bias)
        parts["k_proj"] = nn.Linear(d, dk, bias=args.bias)
        return cls(key_dim=dk, **parts)

    def new_state(self, batch: int, capacity: int, *, device=None, dtype=torch.float32):
        return StaticKV(batch, self.heads, capacity, self.key_dim // self.heads, device=device,
                        dtype=dtype, v_head_dim=self.head_dim)

    def raw_scores(self, q: Tensor, k: Tensor) -> Tensor:
        B, H, T, _ = q.shape
        q = q.transpose(1, 2).reshape(B, T, self.key_dim)  # (B, T, D_k): the shared query
        k = k.transpose(1, 2).reshape(B, k.shape[2], self.key_dim)  # (B, S, D_k)
        m = self.mixing.to(q.dtype)  # (H, D_k)
        return torch.einsum("btd,hd,bsd->bhts", q, m, k) * self.scale  # (B, H, T, S)
