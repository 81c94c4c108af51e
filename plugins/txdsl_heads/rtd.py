"""Replaced-token detection head (Clark et al. 2020, ELECTRA,
https://arxiv.org/abs/2003.10555): HF ``ElectraDiscriminatorPredictions``.

logit = dense_prediction(act(dense(hidden))), one logit per token saying
whether the generator replaced it; ``(B, T, d_model)`` -> ``(B, T)``.
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, HeadArgs
from txdsl.sdk.args import linear_params

from .activations import HeadActivation, activation


class RTDArgs(HeadArgs):
    """ELECTRA replaced-token detection: dense(d, d), act, dense_prediction(d, 1) per token."""

    act: HeadActivation = Field(default="gelu", description="activation after the first "
                                "dense layer")

    def param_count(self, dims: Dims) -> int:
        d = dims.d_model
        return linear_params(d, d, True) + linear_params(d, 1, True)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 2 * dims.d_model * (dims.d_model + 1)


class RTDHead(nn.Module):
    def __init__(self, *, dense: nn.Module, act: nn.Module, dense_prediction: nn.Module):
        super().__init__()
        self.dense, self.act, self.dense_prediction = dense, act, dense_prediction

    @classmethod
    def from_args(cls, args: RTDArgs, ctx: BuildContext) -> "RTDHead":
        d = ctx.dims.d_model
        return cls(dense=nn.Linear(d, d), act=activation(args.act),
                   dense_prediction=nn.Linear(d, 1))

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        h = self.act(self.dense(hidden))  # (B, T, d)
        return self.dense_prediction(h).squeeze(-1)  # (B, T)
