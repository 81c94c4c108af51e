"""BatchNorm (Ioffe & Szegedy 2015, https://arxiv.org/abs/1502.03167) over
the feature dimension of token sequences.

Here to show why Transformers use LayerNorm instead (Shen et al. 2020,
"PowerNorm: Rethinking Batch Normalization in Transformers",
https://arxiv.org/abs/2003.07845): statistics are taken over every token of
the batch (padding included, since a norm receives no mask), they vary a lot
between batches of text, and a model behaves differently in training and in
evaluation (running statistics).

Inputs ``(..., width)`` are flattened to ``(N, width)`` and passed through
``nn.BatchNorm1d`` (the same as transposing ``(B, T, D)`` to ``(B, D, T)``).
Parameters ``weight`` and ``bias``; the running statistics are buffers.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, NormArgs


class BatchNormArgs(NormArgs):
    """BatchNorm (Ioffe & Szegedy 2015) over features, statistics across all tokens of a batch."""

    momentum: float = Field(default=0.1, gt=0.0, le=1.0,
                            description="weight of each batch in the running statistics")

    def param_count(self, dims: Dims) -> int:
        return 2 * dims.width  # running_mean / running_var are buffers, not parameters


class BatchNorm(nn.BatchNorm1d):
    def __init__(self, *, width: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(width, eps=eps, momentum=momentum)

    @classmethod
    def from_args(cls, args: BatchNormArgs, ctx: BuildContext) -> "BatchNorm":
        return cls(width=ctx.dims.width, eps=args.eps, momentum=args.momentum)

    def forward(self, x: Tensor) -> Tensor:  # (..., width) -> (..., width)
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)
