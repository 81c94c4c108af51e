"""Transformer-XL relative attention with segment-level recurrence (Dai et al. 2019).

For layer input ``h`` ``(B, T, d)`` and this layer's memory ``m`` ``(B, M, d)``
(the previous segment's inputs to this layer, gradient stopped), the keys
and values read ``h~ = [m; h]``; query i sits at position ``M + i``, key j
at ``j``, and their distance is ``M + i - j``::

    A(i, j) = (q_i + u) . k_j  +  (q_i + v) . W_r R_{M+i-j}        (paper, section 3.3)
    out     = W_o softmax(A / sqrt(head_dim), causal over [m; h]) V

``R`` are the stack's sinusoidal embeddings (``relative_xl`` position), ``u``
and ``v`` (``r_w_bias``, ``r_r_bias``) per layer (``untie_r``). The new memory
is the last ``mem_len`` positions of ``h~``. The relative shift of the
original code is a gather here: the term for distance ``M + i - j`` is read
from ``(q_i + v) . W_r R`` over the distances ``M+T-1 .. -(T-1)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, NonNegativeInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, AttentionArgs, Dims
from txdsl.sdk.args import linear_params
from txdsl.sdk.attention import Attention, masked_fill_value


def check_no_gqa(args: AttentionArgs, kind: str) -> None:
    if args.kv_heads is not None and args.kv_heads != args.heads:
        raise ArgError(f"{kind} attention has no grouped-query form: kv_heads ({args.kv_heads}) "
                       f"must equal heads ({args.heads})", arg="kv_heads", hint="drop kv_heads")


class RelativeXLArgs(AttentionArgs):
    """Transformer-XL relative attention (Dai et al. 2019, https://arxiv.org/abs/1901.02860).

    score(i, j) = q_i.k_j + q_i.R_{i-j} + u.k_j + v.R_{i-j}, with R the
    sinusoidal relative embeddings projected by ``r_net``. As in the original
    code (``RelPartialLearnableMultiHeadAttn``): ``qkv_net`` and ``o_net``
    without bias, ``r_net`` (d_model -> heads*head_dim, no bias), and the
    global content/position biases u, v ``(heads, head_dim)`` per layer
    (``untie_r: true``). The layer norm the original keeps inside the block is
    the layer's norm. ``mem_len``: positions of segment memory kept per layer.
    """

    accepts: ClassVar[frozenset[str]] = frozenset({"scores"})
    unsupported: ClassVar[dict[str, str]] = {
        "cross": "Transformer-XL attention reads its own segment memory, not an encoder's",
        "decode": "its decode state is the segment memory (the model's mems), not a KV cache",
    }
    bias: bool = Field(default=False, description="biases on the q, k, v and output projections")
    untie_r: bool = Field(default=True, description="every layer has its own u and v (only "
                          "true is built)")
    mem_len: NonNegativeInt = Field(default=0, description="positions of segment memory each "
                                    "layer keeps for the next segment (0: none returned)")

    def check(self, dims: Dims) -> None:
        super().check(dims)
        check_no_gqa(self, "relative_xl")
        if not self.untie_r:
            raise ArgError("untie_r: false (u and v shared by the stack) is not built",
                           arg="untie_r", hint="use untie_r: true (the original's default)")

    def param_count(self, dims: Dims) -> int:
        hd, d, h = self.head_size(dims), dims.width, self.heads
        qkv = 3 * linear_params(d, h * hd, self.bias)
        out = linear_params(h * hd, d, self.bias)
        r_net = d * h * hd
        uv = 2 * h * hd if self.untie_r else 0  # false: the stack's (not built)
        return qkv + out + r_net + uv

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        keys = seq_len + self.mem_len
        return (2 * self.param_count(dims)
                + 3 * 2 * self.heads * self.head_size(dims) * keys)  # AC, BD, weights . V


class RelativeXLAttention(Attention):
    no_kv_cache = "its decode state is the segment memory (the model's mems), not a KV cache"

    def __init__(self, *, r_net: nn.Module, mem_len: int = 0, **base):
        super().__init__(**base)
        self.r_net = r_net  # d_model -> H * hd
        self.r_w_bias = nn.Parameter(torch.zeros(self.heads, self.head_dim))  # u
        self.r_r_bias = nn.Parameter(torch.zeros(self.heads, self.head_dim))  # v
        self.mem_len = mem_len

    @classmethod
    def from_args(cls, args: RelativeXLArgs, ctx) -> "RelativeXLAttention":
        base = cls.projections(args, ctx)
        r_net = nn.Linear(ctx.dims.width, args.heads * args.head_size(ctx.dims), bias=False)
        return cls(r_net=r_net, mem_len=args.mem_len, **base)

    def position_term(self, q: Tensor, position, M: int) -> Tensor:
        """``(q_i + v) . W_r R_{M+i-j}`` ``(B, H, T, M+T)``."""
        B, H, T, hd = q.shape
        S = M + T
        distance = torch.arange(S - 1, -T, -1, device=q.device)  # (S + T - 1,): M+T-1 .. -(T-1)
        r = self.split(self.r_net(position.embed(distance, q.dtype))[None], H)  # (1, H, L, hd)
        bd = (q + self.r_r_bias[:, None]) @ r.transpose(-1, -2)  # (B, H, T, L)
        i = torch.arange(T, device=q.device)[:, None]
        j = torch.arange(S, device=q.device)[None]
        index = (T - 1 - i + j).expand(B, H, T, S)  # distance M+i-j sits at column T-1-i+j
        return torch.gather(bd, -1, index)

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask, position=None,
                cache=None, state=None) -> Tensor:
        # x (B, T, d); the segment memory comes from the stack's state
        B, T, _ = x.shape
        mem = state.next_memory() if state is not None else None
        h = torch.cat([mem.to(x.dtype), x], dim=1) if mem is not None else x  # (B, M+T, d)
        M = h.shape[1] - T
        if state is not None and self.mem_len > 0:
            state.new_mems.append(h[:, -self.mem_len:].detach())
        q = self.split(self.q_proj(x), self.heads)  # (B, H, T, hd)
        k = self.split(self.k_proj(h), self.heads)  # (B, H, M+T, hd)
        v = self.split(self.v_proj(h), self.heads)
        scores = (q + self.r_w_bias[:, None]) @ k.transpose(-1, -2)  # (B, H, T, M+T)
        if position is not None and position.scores is not None:
            scores = scores + self.position_term(q, position.scores, M)
        scores = scores * self.scale
        allowed = mask.dense(T, T, device=x.device)  # (B|1, 1, T, T) over this segment
        if allowed is not None:
            if M:
                seen = torch.ones(*allowed.shape[:3], M, dtype=torch.bool, device=x.device)
                allowed = torch.cat([seen, allowed], dim=-1)  # memory precedes every query
            scores = scores.masked_fill(~allowed, masked_fill_value(scores.dtype))
        weights = nn.functional.dropout(torch.softmax(scores, dim=-1), p=self.dropout,
                                        training=self.training)
        y = weights @ v  # (B, H, T, hd)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d)
