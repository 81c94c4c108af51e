"""BERT's pooler (Devlin et al. 2019, https://arxiv.org/abs/1810.04805):
tanh(dense(hidden[:, 0])), the first ([CLS]) token through a ``Linear(d, d)``
named ``dense``; ``(B, T, d_model)`` -> ``(B, d_model)``. It feeds BERT's
next-sentence and sequence-classification heads.
"""

from __future__ import annotations

from pydantic import Field
from typing import Literal

from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, HeadArgs
from txdsl.sdk.args import linear_params

from .activations import activation


class PoolerArgs(HeadArgs):
    """BERT pooler: the first token through dense(d, d) and tanh."""

    act: Literal["tanh", "none"] = Field(default="tanh",
                                         description="activation after the dense layer")

    def param_count(self, dims: Dims) -> int:
        return linear_params(dims.d_model, dims.d_model, True)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return -(-2 * dims.d_model ** 2 // seq_len)  # once per sequence, spread over its tokens


class Pooler(nn.Module):
    def __init__(self, *, dense: nn.Module, act: nn.Module):
        super().__init__()
        self.dense, self.act = dense, act

    @classmethod
    def from_args(cls, args: PoolerArgs, ctx: BuildContext) -> "Pooler":
        d = ctx.dims.d_model
        return cls(dense=nn.Linear(d, d), act=activation(args.act))

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.act(self.dense(hidden[:, 0]))  # (B, T, d) -> (B, d)
