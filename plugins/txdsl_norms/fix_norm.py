"""FixNorm (Nguyen & Salazar 2019, "Transformers without Tears",
https://arxiv.org/abs/1910.05895, section 2.3; after Nguyen & Chiang 2018).

y = scale * x / max(||x||_2, eps) with a fixed, not learned, ``scale``:
ScaleNorm with g frozen. The paper applies it to word embeddings; as a
norm kind it can go anywhere a norm goes. No parameters.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, NormArgs

from .scale_norm import unit_norm


class FixNormArgs(NormArgs):
    """FixNorm (Nguyen & Salazar 2019): project to the sphere of a fixed radius ``scale``."""

    scale: float = Field(default=1.0, description="the fixed length of the output vectors")

    def param_count(self, dims: Dims) -> int:
        return 0


class FixNorm(nn.Module):
    def __init__(self, *, eps: float = 1e-5, scale: float = 1.0):
        super().__init__()
        self.eps, self.scale = eps, scale

    @classmethod
    def from_args(cls, args: FixNormArgs, ctx: BuildContext) -> "FixNorm":
        return cls(eps=args.eps, scale=args.scale)

    def forward(self, x: Tensor) -> Tensor:  # (..., width) -> (..., width)
        return self.scale * unit_norm(x, self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, scale={self.scale}"
