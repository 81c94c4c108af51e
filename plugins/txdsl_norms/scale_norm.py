"""ScaleNorm (Nguyen & Salazar 2019, "Transformers without Tears",
https://arxiv.org/abs/1910.05895, section 2.2).

y = g * x / max(||x||_2, eps): one learned scalar ``g`` for the whole layer,
initialised to sqrt(width) so that y starts with the per-element scale of a
LayerNorm output. The norm is taken in float32.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, NormArgs


class ScaleNormArgs(NormArgs):
    """ScaleNorm (Nguyen & Salazar 2019): project to the sphere, scale by one learned g."""

    def param_count(self, dims: Dims) -> int:
        return 1


def unit_norm(x: Tensor, eps: float) -> Tensor:
    """x / max(||x||, eps) over the last dimension, in float32, cast back."""
    h = x.float()
    return (h / h.norm(dim=-1, keepdim=True).clamp(min=eps)).to(x.dtype)


class ScaleNorm(nn.Module):
    def __init__(self, *, width: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.tensor(math.sqrt(width)))  # scalar, shape ()

    @classmethod
    def from_args(cls, args: ScaleNormArgs, ctx: BuildContext) -> "ScaleNorm":
        return cls(width=ctx.dims.width, eps=args.eps)

    def forward(self, x: Tensor) -> Tensor:  # (..., width) -> (..., width)
        return self.g * unit_norm(x, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"
