"""Luna: linear unified nested attention (Ma et al. 2021, "Luna: Linear Unified
Nested Attention", https://arxiv.org/abs/2106.01540).

A packed context ``P`` of ``l`` rows travels from layer to layer. Each layer
packs the sequence into it and unpacks it back::

    Y_P = Pack(P, X) = MHA_1(P, X, X)          # (l, d), O(l n)
    out = Unpack(X, Y_P) = MHA_2(X, Y_P, Y_P)  # (n, d)
    P_next = LayerNorm(Y_P + P)                # the next layer's P

The first layer of a stack starts from its learned ``P`` (every layer has one,
so any layer can start; only the first's is used in a stack), drawn from
``N(0, 1)`` as the official code's (``N(0, d^-1/2)`` times its embedding scale
``sqrt(d)``); its projections start as that code's (Xavier, gain
``1/sqrt 2`` on q, k, v: :meth:`LunaAttention.own_init`; reverse task, 80
steps: 1.12, 2.46 under txdsl's N(0, 0.02)). ``P_next`` is
handed on through :class:`~txdsl.sdk.attention.StackState` as
``state.shared["luna"]`` (``(B, l, d)``). Without a state the layer uses its
own ``P``.

Causal (the paper's sec. 3.4, as its code ``LunarCausalAttention``): a
position may only pack its past, so the packing weights are per token,
``A_ij = softplus_{ln 2}(c_i . p_j / sqrt d)`` (``c = pack_k(x)``, ``p =
pack_q(P)``; non-negative, no normalisation over the future), and both
nested attentions become running means over ``i <= t``::

    s_tj = (1/t) sum_{i<=t} (q_t . k_i / sqrt d) A_ij,   W_t = softmax_j(s_t)
    out_t = (1/t) sum_{i<=t} (sum_j W_tj A_ij) v_i

computed with prefix sums (O(T l d)). Padded keys drop out of the sums and of
``t``. The causal layer reads the carried ``P`` but hands nothing on (a
packed context of the whole sequence would carry the future); ``pack_v`` and
``pack_out`` are unused there.
"""

from __future__ import annotations

from typing import ClassVar

import math

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk.args import AttentionArgs, Dims
from txdsl.sdk.attention import AttentionMask

from .common import NO_DECODE, fairseq_init
from .inducing import InducingAttention

SHARED_KEY = "luna"  # StackState.shared[SHARED_KEY]: the packed context (B, l, d)


class LunaArgs(AttentionArgs):
    """Luna (Ma et al. 2021): pack into a context of ``p`` rows carried across layers, unpack."""

    accepts: ClassVar[frozenset[str]] = frozenset()
    unsupported: ClassVar[dict[str, str]] = {
        "cross": "its packed context is the stack's self-attention state",
        "decode": NO_DECODE,
    }
    example: ClassVar[dict] = {"p": 4}

    p: PositiveInt = Field(description="rows l of the packed context carried layer to layer")

    def param_count(self, dims: Dims) -> int:
        return 2 * super().param_count(dims) + self.p * dims.width + 2 * dims.width

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd = self.head_size(dims)
        return 2 * 2 * super().param_count(dims) + 2 * 2 * 2 * self.heads * hd * self.p


class LunaAttention(InducingAttention):
    """Pack the sequence into the carried context, unpack it, hand the context on."""

    def __init__(self, *, m: int, pack: dict, **base):
        super().__init__(m=m, pack=pack, summary_norm=False, **base)
        self.norm = nn.LayerNorm(self.out_proj.out_features)

    def own_init(self) -> None:
        """Luna's code's start (``LunarMultiheadAttention.reset_parameters``): Xavier with
        gain ``1/sqrt 2`` on the packing and unpacking q, k, v, gain 1 on the outputs."""
        fairseq_init(self, ("pack_q", "pack_k", "pack_v", "q_proj", "k_proj", "v_proj"),
                     ("out_proj", "pack_out"))

    @classmethod
    def from_args(cls, args: LunaArgs, ctx) -> "LunaAttention":
        return cls(m=args.p, pack=cls.projections(args, ctx), **cls.projections(args, ctx))

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: AttentionMask,
                position=None, cache=None, state=None) -> Tensor:
        carried = None if state is None else state.shared.get(SHARED_KEY)
        p = carried if carried is not None else self.inducing.to(x.dtype).expand(x.shape[0], -1, -1)
        if mask.causal:
            return self.causal(x, p, mask.key_padding)
        packed = self.mha((self.pack_q, self.pack_k, self.pack_v, self.pack_out), p, x,
                          AttentionMask(key_padding=mask.key_padding, cross=True))  # (B, l, d)
        if state is not None:
            state.shared[SHARED_KEY] = self.norm(packed + p)
        return self.mha((self.q_proj, self.k_proj, self.v_proj, self.out_proj), x, packed,
                        AttentionMask(cross=True))  # (B, T, d)

    def causal(self, x: Tensor, p: Tensor, key_padding: Tensor | None) -> Tensor:
        """Causal Luna over ``x`` ``(B, T, d)`` with packed queries from ``p`` ``(B, l, d)``."""
        B, T, _ = x.shape
        groups = self.heads // self.kv_heads
        pq = self.split(self.pack_q(p), self.heads) * self.scale  # (B, H, l, hd)
        c = self.split(self.pack_k(x), self.kv_heads).repeat_interleave(groups, dim=1)
        pack = F.softplus(c @ pq.transpose(-1, -2), beta=math.log(2.0))  # (B, H, T, l)
        q = self.split(self.q_proj(x), self.heads) * self.scale  # (B, H, T, hd)
        k = self.split(self.k_proj(x), self.kv_heads).repeat_interleave(groups, dim=1)
        v = self.split(self.v_proj(x), self.kv_heads).repeat_interleave(groups, dim=1)
        real = (torch.ones(B, T, device=x.device, dtype=x.dtype) if key_padding is None
                else key_padding.to(x.dtype))[:, None, :, None]  # (B, 1, T, 1)
        pack = pack * real  # a padded token packs nothing
        seen = torch.cumsum(real, dim=2).clamp(min=1.0)  # (B, 1, T, 1): t, real keys only
        # s_tj = q_t . sum_{i<=t} k_i A_ij / t: running (hd, l) sums
        ka = torch.cumsum(k[..., :, None] * pack[..., None, :], dim=2)  # (B, H, T, hd, l)
        scores = torch.einsum("bhtd,bhtdl->bhtl", q, ka) / seen
        weights = F.dropout(torch.softmax(scores.float(), dim=-1).to(x.dtype), p=self.dropout,
                            training=self.training)  # (B, H, T, l)
        av = torch.cumsum(pack[..., :, None] * v[..., None, :], dim=2)  # (B, H, T, l, hd)
        y = torch.einsum("bhtl,bhtld->bhtd", weights, av) / seen  # (B, H, T, hd)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d)
