"""Masked-LM head (Devlin et al. 2019, BERT, https://arxiv.org/abs/1810.04805):
``BertLMPredictionHead``, and ALBERT's ``AlbertMLMHead`` when E < d_model.

logits = decoder(norm(act(transform(hidden)))) + bias:

- ``transform``: ``Linear(d_model, E)`` (HF ``transform.dense`` / ``dense``);
- ``act``: GELU in BERT, ALBERT and ELECTRA;
- ``norm``: ``LayerNorm(E, eps)`` (HF ``transform.LayerNorm`` / ``LayerNorm``);
- ``decoder``: ``Linear(E, vocab, bias=False)`` whose weight, when ``tied``,
  is the token embedding's own ``nn.Parameter``;
- ``bias``: the output-only bias ``(vocab,)`` (HF ``bias`` / ``decoder.bias``).

``(B, T, d_model)`` -> ``(B, T, vocab)``.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from txdsl.sdk import BuildContext, Dims, HeadArgs
from txdsl.sdk.args import linear_params

from .activations import HeadActivation, activation
from .lm import require_vocab, tied_weight


class MLMHeadArgs(HeadArgs):
    """MLM head (BERT; ALBERT): dense to the embedding size, act, LayerNorm, tied decoder + bias."""

    tied: bool = Field(default=True, description="the decoder reuses the token embedding's "
                       "weight")
    act: HeadActivation = Field(default="gelu", description="activation after the dense "
                                "transform")
    eps: float = Field(default=1e-12, gt=0.0)  # BERT's layer_norm_eps
    bias: bool = Field(default=True, description="the output bias per vocabulary entry")

    def check(self, dims: Dims) -> None:
        require_vocab(dims, "mlm")

    def param_count(self, dims: Dims) -> int:
        vocab, d, e = require_vocab(dims, "mlm"), dims.d_model, dims.embed_size
        decoder = 0 if self.tied else e * vocab
        return linear_params(d, e, True) + 2 * e + decoder + (vocab if self.bias else 0)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        vocab, d, e = require_vocab(dims, "mlm"), dims.d_model, dims.embed_size
        return 2 * d * e + 5 * e + 2 * e * vocab


class MLMHead(nn.Module):
    def __init__(self, *, transform: nn.Module, act: nn.Module, norm: nn.Module,
                 decoder: nn.Module, bias: nn.Parameter | None = None):
        super().__init__()
        self.transform, self.act, self.norm, self.decoder = transform, act, norm, decoder
        self.bias = bias

    @classmethod
    def from_args(cls, args: MLMHeadArgs, ctx: BuildContext) -> "MLMHead":
        args.check(ctx.dims)
        d, e, vocab = ctx.dims.d_model, ctx.dims.embed_size, ctx.dims.vocab
        decoder = nn.Linear(e, vocab, bias=False)
        if args.tied:
            decoder.weight = tied_weight(ctx, "mlm")  # the same Parameter, not a copy
        return cls(transform=nn.Linear(d, e), act=activation(args.act),
                   norm=nn.LayerNorm(e, eps=args.eps), decoder=decoder,
                   bias=nn.Parameter(torch.zeros(vocab)) if args.bias else None)

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        h = self.norm(self.act(self.transform(hidden)))  # (B, T, E)
        logits = self.decoder(h)  # (B, T, vocab)
        return logits if self.bias is None else logits + self.bias
