"""The position-wise feed-forward network (Vaswani et al. 2017, section 3.3,
https://arxiv.org/abs/1706.03762).

FFN(x) = down(dropout(act(up(x)))): ``Linear(d, hidden)`` named ``up``, the
activation, dropout, ``Linear(hidden, d)`` named ``down``. ``act: relu`` is
the original; ``gelu`` BERT and ViT; ``gelu_tanh`` GPT-2 (``gelu_new``).
"""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, FFNArgs
from txdsl.sdk.args import linear_params

from .activations import Activation, activation


class MLPArgs(FFNArgs):
    """Two-layer MLP (Vaswani et al. 2017): down(act(up(x)))."""

    act: Activation = Field(default="gelu", description="the activation between the two "
                                                        "linear layers")

    def param_count(self, dims: Dims) -> int:
        d, h = dims.width, self.hidden
        return linear_params(d, h, self.bias) + linear_params(h, d, self.bias)

    def tp_plan(self, dims: Dims, tp: int):
        from txdsl.sdk.sharding import column_then_row

        return column_then_row(("up",), "down")


class FeedForward(nn.Module):
    """down(dropout(act(up(x)))); receives its built layers (torchtune style)."""

    def __init__(self, *, up: nn.Module, down: nn.Module, act: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.up, self.act, self.down = up, act, down
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_args(cls, args: MLPArgs, ctx: BuildContext) -> "FeedForward":
        d, h = ctx.dims.width, args.hidden
        return cls(up=nn.Linear(d, h, bias=args.bias), down=nn.Linear(h, d, bias=args.bias),
                   act=activation(args.act), dropout=args.dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d) -> (B, T, d)
        return self.down(self.dropout(self.act(self.up(x))))  # hidden: (B, T, h)
