"""Classification heads: one label per sequence, or one per token.

- ``classifier``: pool the sequence, dropout, ``Linear(d, classes)`` named
  ``out``; ``(B, T, d)`` -> ``(B, classes)``. ``pool: first`` takes the
  first ([CLS]) token, as ViT (Dosovitskiy et al. 2021,
  https://arxiv.org/abs/2010.11929) and BERT do; ``pool: mean`` averages the
  tokens the attention mask keeps (Sentence-BERT, Reimers & Gurevych 2019,
  https://arxiv.org/abs/1908.10084).
- ``token_classifier``: dropout then ``out`` on every token (BERT NER);
  ``(B, T, d)`` -> ``(B, T, classes)``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, HeadArgs
from txdsl.sdk.args import linear_params


class ClassifierArgs(HeadArgs):
    """Sequence classifier: first-token or masked-mean pooling, then a linear layer."""

    classes: PositiveInt = Field(description="number of output classes")
    pool: Literal["first", "mean"] = Field(
        default="first", description="the first token (CLS), or the mean over unmasked tokens")
    bias: bool = Field(default=True, description="a bias on the output layer")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)  # on the pooled vector

    def param_count(self, dims: Dims) -> int:
        return linear_params(dims.d_model, self.classes, self.bias)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        out = -(-2 * dims.d_model * self.classes // seq_len)  # once per sequence
        return out + (dims.d_model if self.pool == "mean" else 0)


class TokenClassifierArgs(HeadArgs):
    """Token classifier (BERT NER): a linear layer on every token."""

    classes: PositiveInt = Field(description="number of labels per token")
    bias: bool = Field(default=True, description="a bias on the output layer")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0,
                           description="dropout on the hidden states before the output layer")

    def param_count(self, dims: Dims) -> int:
        return linear_params(dims.d_model, self.classes, self.bias)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 2 * dims.d_model * self.classes


def masked_mean(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Mean over T of ``hidden (B, T, d)`` over the tokens ``attention_mask (B, T)`` keeps."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    keep = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)  # (B, d)


class Classifier(nn.Module):
    def __init__(self, *, out: nn.Module, pool: str = "first", dropout: float = 0.0):
        super().__init__()
        if pool not in ("first", "mean"):
            raise ValueError(f"pool must be 'first' or 'mean', got '{pool}'")
        self.pool = pool
        self.dropout = nn.Dropout(dropout)
        self.out = out

    @classmethod
    def from_args(cls, args: ClassifierArgs, ctx: BuildContext) -> "Classifier":
        return cls(out=nn.Linear(ctx.dims.d_model, args.classes, bias=args.bias),
                   pool=args.pool, dropout=args.dropout)

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        pooled = hidden[:, 0] if self.pool == "first" else masked_mean(hidden, attention_mask)
        return self.out(self.dropout(pooled))  # (B, d) -> (B, classes)


class TokenClassifier(nn.Module):
    def __init__(self, *, out: nn.Module, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = out

    @classmethod
    def from_args(cls, args: TokenClassifierArgs, ctx: BuildContext) -> "TokenClassifier":
        return cls(out=nn.Linear(ctx.dims.d_model, args.classes, bias=args.bias),
                   dropout=args.dropout)

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.out(self.dropout(hidden))  # (B, T, d) -> (B, T, classes)
