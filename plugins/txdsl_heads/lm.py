"""Language-model head: logits = hidden @ W^T (+ b), ``(B, T, d_model)`` -> ``(B, T, vocab)``.

``tied: true`` (the default) reuses the token embedding matrix as W (Press &
Wolf 2017, "Using the Output Embedding to Improve Language Models",
https://arxiv.org/abs/1608.05859; GPT-2, T5 v1.0): the head holds the very
``nn.Parameter`` of ``ctx.shared["token_embedding"]`` as its ``weight``, so
both names in a ``state_dict`` are one tensor, and creates nothing new except
the optional bias. ``scale`` multiplies the hidden state before the
projection: T5 v1.0 (Raffel et al. 2020, https://arxiv.org/abs/1910.10683;
Mesh TensorFlow, and Hugging Face's ``scale_decoder_outputs``) rescales the
decoder output by ``d_model ** -0.5`` before its tied head. That needs the embedding width E to equal d_model; a
factorized embedding (ALBERT, ELECTRA) ties through an ``mlm`` head, whose
transform projects d_model down to E first.
"""

from __future__ import annotations

from pydantic import Field
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from txdsl.sdk import ArgError, BuildContext, Dims, HeadArgs


def require_vocab(dims: Dims, kind: str) -> int:
    if dims.vocab is None:
        raise ArgError(f"an {kind} head predicts tokens, but the model has no vocab",
                       hint="set the vocabulary size: vocab = ...")
    return dims.vocab


def tied_weight(ctx: BuildContext, kind: str) -> nn.Parameter:
    """The token embedding's weight ``(vocab, E)``, to share with a tied head."""
    emb = ctx.shared.get("token_embedding")
    weight = getattr(emb, "weight", None)
    if not isinstance(weight, nn.Parameter):
        raise ArgError(f"{kind}(tied: true) shares the token embedding's weight, but the model "
                       f"has no token embedding to share", arg="tied",
                       hint="add a token embedding, or set tied: false")
    expected = (ctx.dims.vocab, ctx.dims.embed_size)
    if tuple(weight.shape) != expected:
        raise ArgError(f"{kind}(tied: true): the token embedding is {tuple(weight.shape)}, "
                       f"expected (vocab, embed_size) = {expected}", arg="tied")
    return weight


class LMHeadArgs(HeadArgs):
    """LM head: vocabulary logits, tied to the token embedding by default (Press & Wolf 2017)."""

    tied: bool = Field(default=True, description="reuse the token embedding's weight "
                       "(needs the embedding size to equal d_model)")
    bias: bool = Field(default=False, description="a learned bias per vocabulary entry")
    scale: float = Field(default=1.0, description="multiplies the hidden state before the "
                         "projection (T5 v1.0's tied head: d_model ** -0.5)")

    def check(self, dims: Dims) -> None:
        require_vocab(dims, "lm")
        if self.tied and dims.embed_size != dims.d_model:
            raise ArgError(
                f"a tied lm head needs embed_size ({dims.embed_size}) == d_model ({dims.d_model})",
                arg="tied", hint="use an mlm head, whose transform projects d_model to the "
                                 "embedding size, or set tied: false")

    def param_count(self, dims: Dims) -> int:
        vocab = require_vocab(dims, "lm")
        return (0 if self.tied else vocab * dims.d_model) + (vocab if self.bias else 0)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        return 2 * dims.d_model * require_vocab(dims, "lm")

    def tp_plan(self, dims: Dims, tp: int):
        from txdsl.sdk.sharding import TPPlan

        return TPPlan(styles={"": "vocab_head"}, note="vocabulary-parallel (as the token "
                      "embedding" + ("; tied, one parameter)" if self.tied else ")"))


class LMHead(nn.Module):
    def __init__(self, *, weight: nn.Parameter, bias: nn.Parameter | None = None,
                 scale: float = 1.0):
        super().__init__()
        self.weight = weight  # (vocab, d_model); may be the token embedding's own Parameter
        self.bias = bias  # (vocab,) or None
        self.scale = scale

    @classmethod
    def from_args(cls, args: LMHeadArgs, ctx: BuildContext) -> "LMHead":
        args.check(ctx.dims)
        vocab, d = ctx.dims.vocab, ctx.dims.d_model
        weight = tied_weight(ctx, "lm") if args.tied else nn.Linear(d, vocab, bias=False).weight
        bias = nn.Parameter(torch.zeros(vocab)) if args.bias else None
        return cls(weight=weight, bias=bias, scale=args.scale)

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if self.scale != 1.0:
            hidden = hidden * self.scale
        return F.linear(hidden, self.weight, self.bias)  # (B, T, d) -> (B, T, vocab)
