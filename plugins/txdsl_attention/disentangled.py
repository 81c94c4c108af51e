"""DeBERTa's disentangled attention (He et al. 2021), as Hugging Face's ``DebertaV2`` runs it.

For query i and key j, with ``delta(i, j)`` the bucketed relative distance
``i - j`` and ``r = delta + span`` its row of the shared relative embeddings
``P`` (``(2 * span, d_model)``, the stack's ``disentangled`` position)::

    score(i, j) = (q_i . k_j  +  q_i . Kr_r  +  k_j . Qr_r) / sqrt(head_dim * (1 + terms))
                    c2c          c2p           p2c

where ``Kr = P W_k`` and ``Qr = P W_q`` use the content projections
(``share_att_key: true``, v3) or their own ``pos_key_proj`` / ``pos_query_proj``
(v2). ``pos_att_type`` picks the terms. Without a position context (the
contract suite) only c2c remains, with the same scale. The paper's enhanced
mask decoder is not part of this attention (HF does not apply it either).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from txdsl.sdk import ArgError, AttentionArgs, Dims
from txdsl.sdk.args import linear_params
from txdsl.sdk.attention import Attention, softmax_attention

POSITION_TERMS = ("c2p", "p2c")  # content-to-position, position-to-content


class DisentangledArgs(AttentionArgs):
    """DeBERTa disentangled attention (He et al. 2021, https://arxiv.org/abs/2006.03654;
    v3: https://arxiv.org/abs/2111.09543).

    score = c2c + c2p + p2c (the terms in ``pos_att_type``), scaled by
    1/sqrt(head_dim * (1 + number of terms)). Counted: the query/key/value
    projections and the output projection (HF ``DebertaV2Attention``'s
    ``self.{query,key,value}_proj`` and ``output.dense``), with biases when
    ``bias``; with ``share_att_key: false`` (v2) also ``pos_key_proj`` (for
    c2p) and ``pos_query_proj`` (for p2c). Not counted: HF's
    ``output.LayerNorm`` (the layer's norm) and the relative embeddings (the
    ``disentangled`` position scheme's).
    """

    accepts: ClassVar[frozenset[str]] = frozenset({"scores"})
    # The position terms, "|"-separated as in HF's DeBERTa configs ("c2p|p2c"): specs have
    # no list literal, and a string prints back to .tx as written. "" = content only.
    pos_att_type: str = Field(default="p2c|c2p", description="the position terms, "
                              "'|'-separated: c2p (content-to-position), p2c (position-to-content)")
    share_att_key: bool = Field(default=True, description="positions reuse the content key/query "
                                "projections (v3); false: pos_key_proj / pos_query_proj (v2)")

    @field_validator("pos_att_type", mode="before")
    @classmethod
    def _terms(cls, value: object) -> object:
        if isinstance(value, (list, tuple)):  # Python callers may pass ["p2c", "c2p"]
            value = "|".join(str(v) for v in value)
        if isinstance(value, str):
            terms = [t.strip() for t in value.split("|") if t.strip()]
            bad = [t for t in terms if t not in POSITION_TERMS]
            if bad:
                raise ValueError(f"unknown term {bad[0]!r} in pos_att_type {value!r}; "
                                 f"expected terms of {'|'.join(POSITION_TERMS)}")
            if len(set(terms)) != len(terms):
                raise ValueError(f"pos_att_type {value!r} names a term twice")
            value = "|".join(terms)
        return value

    def terms(self) -> tuple[str, ...]:
        return tuple(self.pos_att_type.split("|")) if self.pos_att_type else ()

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if self.kv_heads is not None and self.kv_heads != self.heads:
            raise ArgError(f"disentangled attention has no grouped-query form: kv_heads "
                           f"({self.kv_heads}) must equal heads ({self.heads})", arg="kv_heads",
                           hint="drop kv_heads")

    def param_count(self, dims: Dims) -> int:
        count = super().param_count(dims)
        if not self.share_att_key:  # v2: pos_key_proj for c2p, pos_query_proj for p2c
            hd, d = self.head_size(dims), dims.width
            count += len(self.terms()) * linear_params(d, self.heads * hd, self.bias)
        return count

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        # the position terms: one more q.k-sized product each (the projections of P are per
        # forward, not per token)
        hd = self.head_size(dims)
        return super().flops_per_token(dims, seq_len) + len(self.terms()) * 2 * self.heads * hd * seq_len


class DisentangledAttention(Attention):
    def __init__(self, *, terms: tuple[str, ...], pos_key_proj: nn.Module | None = None,
                 pos_query_proj: nn.Module | None = None, **base):
        super().__init__(**base)
        self.terms = terms
        self.pos_key_proj, self.pos_query_proj = pos_key_proj, pos_query_proj

    @classmethod
    def from_args(cls, args: DisentangledArgs, ctx) -> "DisentangledAttention":
        base = cls.projections(args, ctx)
        hd, terms = args.head_size(ctx.dims), args.terms()
        if args.scale is None:
            base["scale"] = (hd * (1 + len(terms))) ** -0.5
        own = {}
        if not args.share_att_key:
            d, width = ctx.dims.width, args.heads * hd
            if "c2p" in terms:
                own["pos_key_proj"] = nn.Linear(d, width, bias=args.bias)
            if "p2c" in terms:
                own["pos_query_proj"] = nn.Linear(d, width, bias=args.bias)
        return cls(terms=terms, **base, **own)

    def position_scores(self, q: Tensor, k: Tensor, relative) -> Tensor:
        """c2p + p2c ``(B, H, T, S)``, unscaled; ``relative``: the position's RelativeScores."""
        B, H, T, _ = q.shape
        S, span = k.shape[2], relative.span
        table = relative.embeddings.to(q.dtype)[None]  # (1, 2span, d)
        index = torch.clamp(relative.delta + span, 0, 2 * span - 1)  # (B|1, T, S)
        index = index[:, None].expand(B, H, T, S)
        score = q.new_zeros(())
        if "c2p" in self.terms:
            proj = self.pos_key_proj if self.pos_key_proj is not None else self.k_proj
            pos_k = self.split(proj(table), H)  # (1, H, 2span, hd)
            c2p = q @ pos_k.transpose(-1, -2)  # (B, H, T, 2span)
            score = score + torch.gather(c2p, -1, index)
        if "p2c" in self.terms:
            proj = self.pos_query_proj if self.pos_query_proj is not None else self.q_proj
            pos_q = self.split(proj(table), H)  # (1, H, 2span, hd)
            p2c = k @ pos_q.transpose(-1, -2)  # (B, H, S, 2span)
            score = score + torch.gather(p2c, -1, index.transpose(-1, -2)).transpose(-1, -2)
        return score

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        # q (B, H, T, hd); k, v (B, H, S, hd)
        relative = position.scores if position is not None else None
        bias = (self.position_scores(q, k, relative) * self.scale
                if relative is not None and self.terms else None)
        return softmax_attention(q, k, v, mask=mask, bias=bias, scale=self.scale,
                                 dropout=self.dropout, training=self.training)
