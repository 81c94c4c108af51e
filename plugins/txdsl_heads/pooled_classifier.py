"""Sequence classification through a pooling layer: ``out(dropout(act(dense(h[:, 0]))))``.

The first ([CLS]) token through ``dense`` ``Linear(d, d)`` and an activation,
then ``out`` ``Linear(d, classes)``; ``(B, T, d)`` -> ``(B, classes)``. That is
BERT's sequence classifier (Devlin et al. 2019, https://arxiv.org/abs/1810.04805:
the tanh pooler then a linear layer; HF ``BertForSequenceClassification``'s
``bert.pooler.dense`` and ``classifier``), RoBERTa's (Liu et al. 2019,
https://arxiv.org/abs/1907.11692; ``classifier.dense``/``out_proj``, tanh) and
ELECTRA's (Clark et al. 2020, https://arxiv.org/abs/2003.10555; gelu).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, HeadArgs
from txdsl.sdk.args import linear_params

from .activations import activation


class PooledClassifierArgs(HeadArgs):
    """Sequence classifier on the pooled first token (BERT, RoBERTa, ELECTRA)."""

    classes: PositiveInt = Field(description="number of output classes")
    act: Literal["tanh", "gelu", "gelu_tanh", "relu"] = Field(
        default="tanh", description="activation after the pooling layer (BERT and RoBERTa: "
                                    "tanh; ELECTRA: gelu)")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0,
                           description="dropout on the pooled vector, before the output layer")

    def param_count(self, dims: Dims) -> int:
        return linear_params(dims.d_model, dims.d_model, True) + linear_params(
            dims.d_model, self.classes, True)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:  # once per sequence
        return -(-2 * dims.d_model * (dims.d_model + self.classes) // seq_len)


class PooledClassifier(nn.Module):
    def __init__(self, *, dense: nn.Module, act: nn.Module, out: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.dense, self.act, self.out = dense, act, out
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def from_args(cls, args: PooledClassifierArgs, ctx: BuildContext) -> "PooledClassifier":
        d = ctx.dims.d_model
        return cls(dense=nn.Linear(d, d), act=activation(args.act),
                   out=nn.Linear(d, args.classes), dropout=args.dropout)

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        pooled = self.act(self.dense(hidden[:, 0]))  # (B, T, d) -> (B, d)
        return self.out(self.dropout(pooled))  # (B, classes)
