"""A Gaussian locality prior with a learnable width per head (Yang, Tu, Wong, Meng, Chao,
Zhang 2018, "Modeling Localness for Self-Attention Networks", https://arxiv.org/abs/1810.10182;
Guo, Qiu, Liu, Zhang 2019, "Gaussian Transformer: A Lightweight Approach for Natural Language
Inference", AAAI 2019).

The scores of head ``h`` get a Gaussian bias centred on the query's own
position (Guo et al.'s central-word form; Yang et al. also predict a centre
from the query, which this kind does not):

    G_h(i, j) = -weight * (i - j)^2 / (2 sigma_h^2)
    softmax(Q K^T / sqrt(d_k) + G_h) V

``sigma_h = exp(log_sigma_h)`` is learned, starting at ``width`` tokens;
``weight`` (fixed) scales the prior: ``weight: 0`` is full attention.
Distances are between slots of one sequence (decoding with the cache keeps
them right); there is no cross-attention form. Grouped-query attention is
unaffected (the prior is per query head).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import Dims

from .scores import ScoresArgs, ScoresAttention, distance


class LocalityArgs(ScoresArgs):
    """Gaussian locality prior (Yang et al. 2018; Guo et al. 2019), a learnable width per head."""

    unsupported: ClassVar[dict[str, str]] = {
        "cross": "the prior measures distances within one sequence"}
    width: float = Field(default=4.0, gt=0.0, description="each head's starting sigma_h "
                         "(tokens); learned per head")
    weight: float = Field(default=1.0, ge=0.0, description="the prior's scale (fixed); "
                          "0 gives full attention")

    def param_count(self, dims: Dims) -> int:
        return super().param_count(dims) + self.heads

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return super().flops_per_token(dims, seq_len) + 3 * self.heads * seq_len


class LocalityAttention(ScoresAttention):
    """Softmax attention plus a learnable-width Gaussian of the query-key distance."""

    def __init__(self, *, width: float, weight: float, **parts):
        super().__init__(**parts)
        self.weight = weight
        self.log_sigma = nn.Parameter(torch.full((self.heads, 1, 1), math.log(width)))  # (H,1,1)

    @classmethod
    def from_args(cls, args: LocalityArgs, ctx) -> "LocalityAttention":
        return cls(width=args.width, weight=args.weight, **cls.projections(args, ctx))

    def prior(self, scores: Tensor, *, mask, state) -> Tensor:
        T, S = scores.shape[2], scores.shape[3]
        d2 = distance(mask, T, S, scores.device).to(scores.dtype) ** 2  # (T, S)
        sigma2 = torch.exp(2 * self.log_sigma).to(scores.dtype)  # (H, 1, 1)
        return scores - self.weight * d2 / (2 * sigma2)  # (B, H, T, S)
