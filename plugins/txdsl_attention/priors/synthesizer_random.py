"""Random Synthesizer (Tay et al. 2021, https://arxiv.org/abs/2005.00743): input-independent
weights.

    out = softmax(R[:, slots, :S] + mask) G(X)      R (H, max_len, max_len)

``R`` is learned (``trainable: true``, the paper's "Random" trainable) or a
fixed random draw kept as a buffer (``trainable: false``, "Fixed Random").
Row ``i`` is the query at slot ``i``, column ``j`` the key at slot ``j``.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import Dims

from .synthetic import SynthesizerArgs, SynthesizerAttention


class SynthesizerRandomArgs(SynthesizerArgs):
    """Random Synthesizer (Tay et al. 2021): a (heads, max_len, max_len) table of weights."""

    trainable: bool = Field(default=True, description="learn R (true) or keep the random "
                            "initialisation fixed (false, not a parameter)")

    def param_count(self, dims: Dims) -> int:
        table = self.heads * self.max_len ** 2 if self.trainable else 0
        return self.base_params(dims) + table

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 2 * self.base_params(dims) + 2 * self.heads * self.head_size(dims) * seq_len


class SynthesizerRandomAttention(SynthesizerAttention):
    """Attention weights from a per-head table indexed by query and key slot."""

    def __init__(self, *, max_len: int, trainable: bool, **parts):
        super().__init__(max_len=max_len, **parts)
        table = torch.randn(self.heads, max_len, max_len)  # (H, L, L)
        if trainable:
            self.table = nn.Parameter(table)
        else:
            self.register_buffer("table", table)

    @classmethod
    def from_args(cls, args: SynthesizerRandomArgs, ctx) -> "SynthesizerRandomAttention":
        return cls(max_len=args.max_len, trainable=args.trainable, **cls.projections(args, ctx))

    def logits(self, x: Tensor, slots: Tensor, S: int) -> Tensor:
        return self.table[:, slots, :S][None]  # (1, H, T, S)
