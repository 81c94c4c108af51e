"""RMSNorm (Zhang & Sennrich 2019, https://arxiv.org/abs/1910.07467).

y = x / sqrt(mean(x^2) + eps) * weight: LayerNorm without the mean and the
shift. Used by T5 (``T5LayerNorm``) and LLaMA (``LlamaRMSNorm``). As in
those, the statistic is computed in float32 and the normalised input cast
back to the input dtype before the weight multiplies it.

``offset: true`` is Gemma's variant (``GemmaRMSNorm``): the weight is stored
as an offset from one (initialised to zero) and the whole product is taken
in float32, y = x_hat * (1 + weight).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, NormArgs


class RMSNormArgs(NormArgs):
    """RMSNorm (Zhang & Sennrich 2019): scale by the root mean square, no mean, no shift."""

    eps: float = Field(default=1e-6, gt=0.0)  # LLaMA/T5 default
    offset: bool = False  # Gemma: multiply by (1 + weight), weight initialised to 0

    def param_count(self, dims: Dims) -> int:
        return dims.width

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 4 * dims.width  # square, mean, scale, weight


class RMSNorm(nn.Module):
    def __init__(self, *, width: int, eps: float = 1e-6, offset: bool = False):
        super().__init__()
        self.width, self.eps, self.offset = width, eps, offset
        self.weight = nn.Parameter(torch.zeros(width) if offset else torch.ones(width))

    @classmethod
    def from_args(cls, args: RMSNormArgs, ctx: BuildContext) -> "RMSNorm":
        return cls(width=ctx.dims.width, eps=args.eps, offset=args.offset)

    def forward(self, x: Tensor) -> Tensor:  # (..., width) -> (..., width)
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:  # GemmaRMSNorm: the product stays in float32
            return (h * (1.0 + self.weight.float())).to(dtype)
        return self.weight * h.to(dtype)  # LlamaRMSNorm

    def extra_repr(self) -> str:
        return f"{self.width}, eps={self.eps}" + (", offset=True" if self.offset else "")
