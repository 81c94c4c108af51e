"""Luna: linear unified nested attention (Ma et al. 2021, "Luna: Linear Unified
Nested Attention", https://arxiv.org/abs/2106.01540).

A packed context ``P`` of ``l`` rows travels from layer to layer. Each layer
packs the sequence into it and unpacks it back::

    Y_P = Pack(P, X) = MHA_1(P, X, X)          # (l, d), O(l n)
    out = Unpack(X, Y_P) = MHA_2(X, Y_P, Y_P)  # (n, d)
    P_next = LayerNorm(Y_P + P)                # the next layer's P

The first layer of a stack starts from its learned ``P`` (every layer has one,
so any layer can start; only the first's is used in a stack). ``P_next`` is
handed on through :class:`~txdsl.sdk.attention.StackState` as
``state.shared["luna"]`` (``(B, l, d)``). Without a state the layer uses its
own ``P``. Bidirectional self-attention only (the paper's causal Luna needs
a different, cumulative formulation).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk.args import AttentionArgs, Dims
from txdsl.sdk.attention import AttentionMask

from .common import NO_DECODE
from .inducing import InducingAttention

SHARED_KEY = "luna"  # StackState.shared[SHARED_KEY]: the packed context (B, l, d)


class LunaArgs(AttentionArgs):
    """Luna (Ma et al. 2021): pack into a context of ``p`` rows carried across layers, unpack."""

    accepts: ClassVar[frozenset[str]] = frozenset()
    unsupported: ClassVar[dict[str, str]] = {
        "causal": "the packed context summarises the whole sequence, future positions "
                  "included (causal Luna is a different, cumulative formulation)",
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
        super().__init__(m=m, pack=pack, **base)
        self.norm = nn.LayerNorm(self.out_proj.out_features)

    @classmethod
    def from_args(cls, args: LunaArgs, ctx) -> "LunaAttention":
        return cls(m=args.p, pack=cls.projections(args, ctx), **cls.projections(args, ctx))

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: AttentionMask,
                position=None, cache=None, state=None) -> Tensor:
        carried = None if state is None else state.shared.get(SHARED_KEY)
        p = carried if carried is not None else self.inducing.to(x.dtype).expand(x.shape[0], -1, -1)
        packed = self.mha((self.pack_q, self.pack_k, self.pack_v, self.pack_out), p, x,
                          AttentionMask(key_padding=mask.key_padding, cross=True))  # (B, l, d)
        if state is not None:
            state.shared[SHARED_KEY] = self.norm(packed + p)
        return self.mha((self.q_proj, self.k_proj, self.v_proj, self.out_proj), x, packed,
                        AttentionMask(cross=True))  # (B, T, d)
