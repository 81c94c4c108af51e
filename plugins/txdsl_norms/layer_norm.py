"""LayerNorm (Ba et al. 2016, https://arxiv.org/abs/1607.06450).

y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias, over the last
dimension; ``torch.nn.LayerNorm`` semantics and parameter names, so weights
copy across from Hugging Face checkpoints unchanged. ``bias: false`` drops
the shift (as in OLMo and some GPT-NeoX variants).
"""

from __future__ import annotations

from pydantic import Field
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, NormArgs


class LayerNormArgs(NormArgs):
    """LayerNorm (Ba et al. 2016): normalise by mean and variance, then scale and shift."""

    bias: bool = Field(default=True, description="a learned shift after the scale; false "
                       "drops it (OLMo, some GPT-NeoX variants)")

    def param_count(self, dims: Dims) -> int:
        return dims.width * (2 if self.bias else 1)


class LayerNorm(nn.Module):
    def __init__(self, *, width: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.width, self.eps = width, eps
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None

    @classmethod
    def from_args(cls, args: LayerNormArgs, ctx: BuildContext) -> "LayerNorm":
        return cls(width=ctx.dims.width, eps=args.eps, bias=args.bias)

    def forward(self, x: Tensor) -> Tensor:  # (..., width) -> (..., width)
        return F.layer_norm(x, (self.width,), self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.width}, eps={self.eps}, bias={self.bias is not None}"
