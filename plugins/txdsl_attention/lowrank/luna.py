"""Luna: linear unified nested attention (Ma et al. 2021, "Luna: Linear Unified
Nested Attention", https://arxiv.org/abs/2106.01540), in the form of its
official code's ``LunarMultiheadAttention`` and ``LunarCausalAttention``
(github.com/XuezheMax/fairseq-apollo, ``fairseq/modules/lunar_attention.py``
at commit 0d654e4).

A packed context ``P`` of ``l`` rows travels from layer to layer. Each layer
packs the sequence into it and unpacks it back, per head (``pheads`` heads
``Hp`` of ``d/Hp`` channels for the pack, the code's projected attention heads,
by default the layer's ``H``; the layer's own heads for the unpack)::

    Y_P = softmax(pack_q(P) X^T / sqrt(d/Hp)) X  # pack: keys = values = X, (l, d), O(l n)
    out = MHA(X, Y_P, Y_P)                      # unpack: q, k, v, out projections, (n, d)

The pack attends over the layer's input ``X`` itself with only a query
projection (the code's ``pq_proj``; keys and values are the context split
into heads, with no projection and no output projection). The paper writes
both nested attentions with their own ``W_Q, W_K, W_V``, and later versions of
the code project the pack's keys = values (``pc_proj``). Reverse task, 240
steps, seeds 0-4 (``tests/plugins/lowrank/test_models.py``; full attention
0.004 on each): this form 0.198/0.005/0.026/0.013/0.004 (the same form with
its parameters drawn in another order: 0.005/0.004/0.007/0.378/0.006, so which
seeds leave the plateau in time is close to a coin flip); with ``pc_proj``
0.245/0.004/0.088/0.132/0.005; two full MHAs (this kind's first form) 0.004/
0.197/0.379/0.838/0.374; ``pheads: 1`` 0.173/0.074/0.084/0.215/0.087, ``pheads: 2``
0.095/0.008/0.026/0.003/0.004 (this form's default is ``pheads = heads = 4``).

``P`` follows the layer's residual scheme (``Dims.residual``), as the code's
``LunaEncoderLayer`` does with ``normalize_before``:

- pre-norm (``pre``, ``sandwich``, and outside a layer): the pack's queries
  come from ``LayerNorm(P)``, and ``P + Y_P`` goes to the next layer (with
  the post-norm hand-on in a pre-norm stack: 0.005/0.164/0.004/0.009/0.017);
- post-norm (``post``, ``deepnorm``; the paper's equations): the queries come
  from ``P``, and ``LayerNorm(P + Y_P)`` goes on.

The first layer of a stack starts from its learned ``P`` (every layer has one,
so any layer can start; only the first's is used in a stack), drawn from
``N(0, 1)`` as the official code's (``N(0, d^-1/2)`` times its embedding scale
``sqrt(d)``); its projections start as that code's (Xavier, gain ``1/sqrt 2``
on ``pack_q``, q, k, v, gain 1 on out: :meth:`LunaAttention.own_init`; under
txdsl's N(0, 0.02) the first form barely trained: 2.46 after 80 steps). The
packed context is handed on through :class:`~txdsl.sdk.attention.StackState`
as ``state.shared["luna"]`` (``(B, l, d)``). Without a state the layer uses
its own ``P``.

Causal (the paper's sec. 3.4, as the code's ``LunarCausalAttention``): a
position may only pack its past, so the packing weights are per token,
``A_ij = elu(x_i . p_j / sqrt(d/H)) + 1`` (``x_i`` the token's own channels of
head ``h``; ``p = pack_q(P)``; positive, no normalisation over the future),
and both nested attentions become running means over ``i <= t``::

    s_tj = (1/t) sum_{i<=t} (q_t . k_i / sqrt d) A_ij,   W_t = softmax_j(s_t)
    out_t = (1/t) sum_{i<=t} (sum_j W_tj A_ij) v_i

computed with prefix sums (O(T l d)). Padded keys drop out of the sums and of
``t``. The causal layer reads the carried ``P`` as it is (the code's decoder
self-attention takes ``px`` unnormalised) but hands nothing on (a packed
context of the whole sequence would carry the future).

Decoding (the code's ``incremental_causal_attention``): the three running sums,
``sum k_i A_i^T`` ``(H, hd, l)``, ``sum A_i v_i^T`` ``(H, l, hd)`` and the count
``t``, are all a step needs of the past: :class:`LunaState`, constant in size,
so a step at token 10,000 costs what one at token 10 does. A bidirectional
stack has no such state (its pack reads every position) and refuses one.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import ArgError
from txdsl.sdk.args import AttentionArgs, Dims, linear_params
from txdsl.sdk.attention import Attention, AttentionMask, softmax_attention

from .common import fairseq_init

SHARED_KEY = "luna"  # StackState.shared[SHARED_KEY]: the packed context (B, l, d)
PRE_NORM = (None, "pre", "sandwich")  # Dims.residual values whose P stream is pre-norm


class LunaArgs(AttentionArgs):
    """Luna (Ma et al. 2021): pack into a context of ``p`` rows carried across layers, unpack."""

    accepts: ClassVar[frozenset[str]] = frozenset()
    unsupported: ClassVar[dict[str, str]] = {
        "cross": "its packed context is the stack's self-attention state",
    }
    example: ClassVar[dict] = {"p": 4}

    p: PositiveInt = Field(description="rows l of the packed context carried layer to layer")
    pheads: PositiveInt | None = Field(
        default=None, description="heads of the pack attention (the code's "
        "--encoder-projected-attention-heads: 1, 4 or 8 in its scripts); none: heads. The "
        "causal form packs with heads, as the code's LunarCausalAttention")
    scale: float | None = Field(default=None, description="score scale of the unpack and "
                                "the pack; default 1/sqrt of each one's head size (the "
                                "pack's: d_model / pheads)")

    def pack_heads(self) -> int:
        return self.pheads or self.heads

    def check(self, dims: Dims) -> None:
        super().check(dims)
        for name, n in (("heads", self.heads), ("pheads", self.pack_heads())):
            if dims.width % n:
                raise ArgError(f"luna packs d_model ({dims.width}) split into {name} ({n}) "
                               "equal parts, as Luna's code does, and it doesn't divide",
                               arg=name, hint=f"pick {name} dividing d_model")

    def param_count(self, dims: Dims) -> int:  # q, k, v, out; pack_q; P; P's LayerNorm
        d = dims.width
        return super().param_count(dims) + linear_params(d, d, self.bias) + self.p * d + 2 * d

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd, d = self.head_size(dims), dims.width
        proj = 2 * super().param_count(dims)  # q and out per token; k, v on l rows: fewer
        return proj + 2 * 2 * d * self.p + 2 * 2 * self.heads * hd * self.p  # pack, unpack

    def state_elements(self, dims: Dims, seq_len: int) -> int:
        """Constant (the causal form's running sums, :class:`LunaState`): ``(H, hd, l)``,
        ``(H, l, hd)`` and one count, whatever ``seq_len``."""
        return 2 * self.heads * self.head_size(dims) * self.p + 1


class LunaAttention(Attention):
    """Pack the sequence into the carried context, unpack it, hand the context on."""


    def __init__(self, *, p: int, pack_q: nn.Module, pre_norm: bool = True,
                 pack_heads: int | None = None, pack_scale: float | None = None, **base):
        super().__init__(**base)
        d = self.out_proj.out_features
        self.packed = nn.Parameter(torch.randn(p, d))  # P (l, d), unit scale (see above)
        self.pack_q = pack_q  # (d -> d): P's queries, H heads of d/H
        self.norm = nn.LayerNorm(d)  # P's norm: before the pack (pre) or after (post)
        self.pre_norm = pre_norm
        self.pack_heads = pack_heads or self.heads  # the bidirectional pack's heads
        self.pack_scale = pack_scale if pack_scale is not None else (d // self.pack_heads) ** -0.5
        self.causal_pack_scale = (pack_scale if pack_scale is not None
                                  else (d // self.heads) ** -0.5)

    def own_init(self) -> None:
        """Luna's code's start (``LunarMultiheadAttention.reset_parameters``): Xavier with
        gain ``1/sqrt 2`` on ``pack_q`` (its ``pq_proj``) and the unpack's q, k, v, gain 1
        on the output."""
        fairseq_init(self, ("pack_q", "q_proj", "k_proj", "v_proj"), ("out_proj",))

    @classmethod
    def from_args(cls, args: LunaArgs, ctx) -> "LunaAttention":
        d = ctx.dims.width
        return cls(p=args.p, pack_q=nn.Linear(d, d, bias=args.bias),
                   pre_norm=ctx.dims.residual in PRE_NORM, pack_heads=args.pack_heads(),
                   pack_scale=args.scale, **cls.projections(args, ctx))

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask: AttentionMask,
                position=None, cache=None, state=None) -> Tensor:
        carried = None if state is None else state.shared.get(SHARED_KEY)
        p = carried if carried is not None else self.packed.to(x.dtype).expand(x.shape[0], -1, -1)
        if cache is not None:
            return self.decode(x, p, mask, cache)
        if mask.causal:
            return self.causal(x, p, mask.key_padding)[0]
        packed = self.pack(self.norm(p) if self.pre_norm else p, x, mask.key_padding)
        if state is not None:
            state.shared[SHARED_KEY] = p + packed if self.pre_norm else self.norm(p + packed)
        return self.unpack(x, packed)

    def pack(self, p: Tensor, x: Tensor, key_padding: Tensor | None) -> Tensor:
        """``Y_P`` ``(B, l, d)``: ``p`` ``(B, l, d)`` attending over ``x`` ``(B, T, d)``."""
        B, l, d = p.shape
        q = self.split(self.pack_q(p), self.pack_heads)  # (B, Hp, l, d/Hp)
        kv = self.split(x, self.pack_heads)  # (B, Hp, T, d/Hp): keys = values = x
        y = softmax_attention(q, kv, kv, mask=AttentionMask(key_padding=key_padding, cross=True),
                              scale=self.pack_scale, dropout=self.dropout, training=self.training)
        return y.transpose(1, 2).reshape(B, l, d)

    def unpack(self, x: Tensor, packed: Tensor) -> Tensor:
        """``MHA(x, packed, packed)`` ``(B, T, d)`` with the layer's projections."""
        B, T, _ = x.shape
        groups = self.heads // self.kv_heads
        q = self.split(self.q_proj(x), self.heads)  # (B, H, T, hd)
        k = self.split(self.k_proj(packed), self.kv_heads).repeat_interleave(groups, dim=1)
        v = self.split(self.v_proj(packed), self.kv_heads).repeat_interleave(groups, dim=1)
        y = softmax_attention(q, k, v, mask=AttentionMask(cross=True), scale=self.scale,
                              dropout=self.dropout, training=self.training)  # (B, H, T, hd)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))

    def new_state(self, batch: int, capacity: int, *, device=None,
                  dtype: torch.dtype = torch.float32) -> "LunaState":
        """The causal form's constant-size decode state (the code's accumulated matrices)."""
        return LunaState(batch, self.heads, self.head_dim, self.packed.shape[0],
                         device=device, dtype=dtype)

    def decode(self, x: Tensor, p: Tensor, mask: AttentionMask, cache: "LunaState") -> Tensor:
        """A decoding step of causal Luna: the running sums go on from ``cache``."""
        if not mask.causal or mask.patterns:
            raise ValueError("luna decodes with its causal form's running sums: a "
                             "bidirectional stack or a mask pattern can't decode with them "
                             "(run without a cache)")
        T = x.shape[1]
        key_padding = mask.key_padding
        if key_padding is not None:  # the whole capacity's padding: this step's slots
            slots = (mask.q_slots if mask.q_slots is not None
                     else torch.arange(T, device=x.device))
            key_padding = key_padding[:, slots]
        out, sums = self.causal(x, p, key_padding, cache.read())
        cache.write(*sums)
        return out

    def causal(self, x: Tensor, p: Tensor, key_padding: Tensor | None,
               start: tuple[Tensor, Tensor, Tensor] | None = None
               ) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Causal Luna over ``x`` ``(B, T, d)`` with packed queries from ``p`` ``(B, l, d)``,
        the running sums continued from ``start`` (a decode state's), returned at the end."""
        B, T, _ = x.shape
        groups = self.heads // self.kv_heads
        pq = self.split(self.pack_q(p), self.heads) * self.causal_pack_scale  # (B, H, l, d/H)
        c = self.split(x, self.heads)  # (B, H, T, d/H)
        pack = F.elu(c @ pq.transpose(-1, -2)) + 1.0  # (B, H, T, l), > 0
        q = self.split(self.q_proj(x), self.heads) * self.scale  # (B, H, T, hd)
        k = self.split(self.k_proj(x), self.kv_heads).repeat_interleave(groups, dim=1)
        v = self.split(self.v_proj(x), self.kv_heads).repeat_interleave(groups, dim=1)
        real = (torch.ones(B, T, device=x.device, dtype=x.dtype) if key_padding is None
                else key_padding.to(x.dtype))[:, None, :, None]  # (B, 1, T, 1)
        pack = pack * real  # a padded token packs nothing
        # s_tj = q_t . sum_{i<=t} k_i A_ij / t: running (hd, l) and (l, hd) sums, t tokens
        ka = torch.cumsum(k[..., :, None] * pack[..., None, :], dim=2)  # (B, H, T, hd, l)
        av = torch.cumsum(pack[..., :, None] * v[..., None, :], dim=2)  # (B, H, T, l, hd)
        count = torch.cumsum(real, dim=2)  # (B, 1, T, 1): real tokens so far
        if start is not None:
            ka0, av0, count0 = start
            ka, av = ka + ka0[:, :, None].to(ka.dtype), av + av0[:, :, None].to(av.dtype)
            count = count + count0[:, :, None].to(count.dtype)
        seen = count.clamp(min=1.0)
        scores = torch.einsum("bhtd,bhtdl->bhtl", q, ka) / seen
        weights = F.dropout(torch.softmax(scores.float(), dim=-1).to(x.dtype), p=self.dropout,
                            training=self.training)  # (B, H, T, l)
        y = torch.einsum("bhtl,bhtld->bhtd", weights, av) / seen  # (B, H, T, hd)
        out = self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d)
        return out, (ka[:, :, -1], av[:, :, -1], count[:, :, -1])


class LunaState:
    """Causal Luna's decode state for ``batch`` rows: the running sums of ``k_i A_i^T``
    ``(B, H, hd, l)`` and ``A_i v_i^T`` ``(B, H, l, hd)`` and the count of real tokens
    ``(B, 1, 1)``; constant size, as linear attention's (updated in place, so a compiled
    step compiles once)."""

    def __init__(self, batch: int, heads: int, head_dim: int, rows: int, *,
                 device=None, dtype: torch.dtype = torch.float32):
        self.ka = torch.zeros(batch, heads, head_dim, rows, device=device, dtype=dtype)
        self.av = torch.zeros(batch, heads, rows, head_dim, device=device, dtype=dtype)
        self.count = torch.zeros(batch, 1, 1, device=device, dtype=dtype)

    def read(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.ka, self.av, self.count

    def write(self, ka: Tensor, av: Tensor, count: Tensor) -> None:
        self.ka.copy_(ka)
        self.av.copy_(av)
        self.count.copy_(count)

    def reorder(self, index: Tensor) -> None:
        self.ka, self.av, self.count = self.ka[index], self.av[index], self.count[index]

    def grow(self, capacity: int) -> None:
        pass  # constant size

    def nbytes(self) -> int:
        return self.ka.nbytes + self.av.nbytes + self.count.nbytes
