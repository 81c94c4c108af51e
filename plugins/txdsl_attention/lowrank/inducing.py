"""Induced set attention (Lee et al. 2019, "Set Transformer: A Framework for
Attention-based Permutation-Invariant Neural Networks",
https://arxiv.org/abs/1810.00825, the ISAB block).

``m`` learned inducing points ``I`` first attend to the set ``X``, then ``X``
attends to their summary ``H`` (both multi-head softmax attention)::

    H' = LayerNorm(I + MHA_1(I, X, X))      # the paper's MAB(I, X), O(m n) ...
    H  = LayerNorm(H' + rFF(H'))            # ... with its row-wise feed-forward: (m, d)
    out = MHA_2(X, H, H)                    # (n, d)

``MHA_2`` has the usual ``q_proj``/``k_proj``/``v_proj``/``out_proj``; ``MHA_1``
has its own (``pack_*``). ``H`` is the paper's ``MAB(I, X) = LayerNorm(H' +
rFF(H'))``, ``H' = LayerNorm(I + Multihead(I, X, X))``, with the rFF of Lee et
al.'s code (``H' + relu(fc_o(H'))``, ``summary_ff``) and its two layer norms
(``ln=True``: ``summary_norm``, ``summary_norm2``). The outer ``MAB(X, H)`` is
the attention alone: the block around it supplies its own residual, norm and
FFN. Dropping the summary's rFF and second norm (as this kind did first) trains
worse: reverse task, 80 steps, seeds 0/1/2: 0.570/0.630/0.103 without, 0.334/
0.353/0.056 with. The inducing points start at unit scale, ``N(0, 1)``, the scale of
the layer-normed elements they attend to (as Luna's official code starts its
packed context): at ``N(0, 1/d)`` their queries, and without the norm ``H``
(whose attended part passes two N(0, 0.02) projections), were ~0, so both
attentions started uniform and barely trained. The projections of both MABs
start as the Set Transformer's code builds them, plain ``nn.Linear`` layers
at PyTorch's default init (:meth:`InducingAttention.own_init`): under
txdsl's N(0, 0.02) the value path crosses two attentions' v and out
projections and the reverse task moved 2.78 -> 2.57 in 80 steps; with it,
0.57 (``tests/plugins/lowrank/test_models.py``).
Order-free: it takes no positions. As cross-attention the inducing points
summarise the memory instead of ``x``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import AttentionArgs
from txdsl.sdk.args import Dims
from txdsl.sdk.attention import Attention, AttentionMask, softmax_attention

from .common import NO_DECODE, torch_default_init


class InducingArgs(AttentionArgs):
    """Set Transformer's induced set attention (Lee et al. 2019): ``m`` inducing points."""

    accepts: ClassVar[frozenset[str]] = frozenset()  # a set has no order: no positions
    unsupported: ClassVar[dict[str, str]] = {
        "causal": "every inducing point summarises the whole set, future positions included",
        "decode": NO_DECODE,
    }
    example: ClassVar[dict] = {"m": 4}

    m: PositiveInt = Field(description="number of learned inducing points")

    def param_count(self, dims: Dims) -> int:  # two MHAs, the points, H's rFF and 2 norms
        d = dims.width
        return 2 * super().param_count(dims) + self.m * d + (d * d + d) + 2 * 2 * d

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd = self.head_size(dims)
        proj = 2 * 2 * AttentionArgs.param_count(self, dims)
        return proj + 2 * 2 * 2 * self.heads * hd * self.m  # H's rFF: m rows, not per token


class InducingAttention(Attention):
    """ISAB: inducing points attend to the set, the set attends to them."""

    no_kv_cache = NO_DECODE

    def __init__(self, *, m: int, pack: dict, summary_norm: bool = True, **base):
        super().__init__(**base)
        d = self.out_proj.out_features
        self.inducing = nn.Parameter(torch.randn(m, d))  # (m, d), unit scale (see above)
        # The summary's MAB (Luna, a subclass, packs without them): ln0, rFF (fc_o), ln1.
        self.summary_norm = nn.LayerNorm(d) if summary_norm else None  # ln0 on H'
        self.summary_ff = nn.Linear(d, d) if summary_norm else None  # H' + relu(fc_o(H'))
        self.summary_norm2 = nn.LayerNorm(d) if summary_norm else None  # ln1
        self.pack_q, self.pack_k = pack["q_proj"], pack["k_proj"]
        self.pack_v, self.pack_out = pack["v_proj"], pack["out_proj"]

    def own_init(self) -> None:
        """The Set Transformer code's start: its MABs are plain ``nn.Linear`` layers, so
        PyTorch's default init (see the module docstring for what it changes)."""
        torch_default_init(self, ("q_proj", "k_proj", "v_proj", "out_proj",
                                  "pack_q", "pack_k", "pack_v", "pack_out", "summary_ff"))

    @classmethod
    def from_args(cls, args: InducingArgs, ctx) -> "InducingAttention":
        return cls(m=args.m, pack=cls.projections(args, ctx), **cls.projections(args, ctx))

    def mha(self, projections, x: Tensor, keys: Tensor, mask: AttentionMask) -> Tensor:
        """Multi-head softmax attention of ``x`` ``(B, T, d)`` over ``keys`` ``(B, S, d)``."""
        q_proj, k_proj, v_proj, out_proj = projections
        B, T, _ = x.shape
        q = self.split(q_proj(x), self.heads)  # (B, H, T, hd)
        groups = self.heads // self.kv_heads
        k = self.split(k_proj(keys), self.kv_heads).repeat_interleave(groups, dim=1)
        v = self.split(v_proj(keys), self.kv_heads).repeat_interleave(groups, dim=1)
        y = softmax_attention(q, k, v, mask=mask, scale=self.scale, dropout=self.dropout,
                              training=self.training)  # (B, H, T, hd)
        return out_proj(y.transpose(1, 2).reshape(B, T, -1))

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: AttentionMask,
                position=None, cache=None, state=None) -> Tensor:
        source = x if memory is None else memory  # (B, S, d)
        points = self.inducing.to(x.dtype).expand(x.shape[0], -1, -1)  # (B, m, d)
        keys_mask = AttentionMask(key_padding=mask.key_padding, cross=True)
        h = self.summary_norm(points + self.mha((self.pack_q, self.pack_k, self.pack_v,
                                                 self.pack_out), points, source, keys_mask))
        h = self.summary_norm2(h + torch.relu(self.summary_ff(h)))  # (B, m, d): ln1(H' + rFF)
        return self.mha((self.q_proj, self.k_proj, self.v_proj, self.out_proj), x, h,
                        AttentionMask(cross=True))  # (B, T, d), h: (B, m, d)
