"""XLNet's two-stream relative attention (Yang et al. 2019), as Hugging Face's ``XLNetModel``.

Transformer-XL's relative attention (``relative_xl``: u = ``r_w_bias``, v =
``r_r_bias``, sinusoidal R over distances ``M + i - j``, memory keys first),
bidirectional, plus a segment term: for ``token_type_ids`` (memory counted as
segment 0), ``s_ij = [type_i != type_j]`` and the score gains
``(q_i + r_s_bias) . seg_embed[s_ij]``. Masks (HF's): key j is hidden from
query i where j is padding or ``perm_mask[b, i, j] = 1``; the content stream
always sees itself.

The query stream (permutation LM): with ``target_mapping`` ``(B, P, T)`` the
stack carries P more positions after the T content ones (``StackState.
query_stream``; they start as the ``relative_xl`` position's ``mask_emb``).
Their queries are ``target_mapping``-placed, attend to the content keys and
values under ``perm_mask`` alone, and are mapped back; the layer's norm and
FFN act on both streams position-wise, as in HF.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, NonNegativeInt
from torch import Tensor, nn

from txdsl.sdk import ArgError, AttentionArgs, Dims

from .relative_xl import RelativeXLAttention, check_no_gqa

BIG = 1e30  # HF subtracts 1e30 * mask from the scores (not a masked fill)


class TwoStreamArgs(AttentionArgs):
    """XLNet two-stream relative attention (Yang et al. 2019, https://arxiv.org/abs/1906.08237).

    Content and query streams share the weights of Hugging Face's
    ``XLNetRelativeAttention``: q, k, v, o, r ``(d_model, heads, head_dim)``
    without biases; r_w_bias, r_r_bias, r_s_bias ``(heads, head_dim)``;
    seg_embed ``(2, heads, head_dim)``. The post-attention LayerNorm XLNet
    keeps inside that block is the layer's norm (``residual = post``), as in
    ``relative_xl``, so it is not counted here.
    """

    accepts: ClassVar[frozenset[str]] = frozenset({"scores"})
    unsupported: ClassVar[dict[str, str]] = {
        "causal": "XLNet's factorisation order comes from perm_mask, not a causal stack",
        "cross": "two-stream attention reads its own memory, not an encoder's",
        "decode": "its decode state is the segment memory (the model's mems), not a KV cache",
    }
    bias: bool = Field(default=False, description="no projection biases (XLNet has none)")
    mem_len: NonNegativeInt = Field(default=0, description="positions of segment memory each "
                                    "layer keeps for the next segment (0: none returned)")

    def check(self, dims: Dims) -> None:
        super().check(dims)
        check_no_gqa(self, "two_stream")
        if self.bias:
            raise ArgError("two_stream attention has no projection biases (bias: true)",
                           arg="bias", hint="drop bias")

    def param_count(self, dims: Dims) -> int:
        hd, d, h = self.head_size(dims), dims.width, self.heads
        projections = 5 * d * h * hd  # q, k, v, o, r
        biases = 3 * h * hd + 2 * h * hd  # r_w, r_r, r_s biases; seg_embed
        return projections + biases

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        keys = seq_len + self.mem_len
        return 2 * self.param_count(dims) + 4 * 2 * self.heads * self.head_size(dims) * keys


class TwoStreamAttention(RelativeXLAttention):
    def __init__(self, **base):
        super().__init__(**base)
        self.r_s_bias = nn.Parameter(torch.zeros(self.heads, self.head_dim))
        self.seg_embed = nn.Parameter(torch.zeros(2, self.heads, self.head_dim))

    def scores(self, q: Tensor, k: Tensor, position, M: int, segments: Tensor | None) -> Tensor:
        """Content, position and segment terms ``(B, H, Tq, M+T)``, scaled; q ``(B, H, Tq, hd)``
        with Tq = T (the query stream's queries sit at content positions)."""
        ac = (q + self.r_w_bias[:, None]) @ k.transpose(-1, -2)
        if position is not None and position.scores is not None:
            ac = ac + self.position_term(q, position.scores, M)
        if segments is not None:  # (B, T, M+T) 0/1: different segments
            ef = (q + self.r_s_bias[:, None]) @ self.seg_embed.permute(1, 2, 0)  # (B, H, T, 2)
            ac = ac + torch.where(segments[:, None].bool(), ef[..., 1:], ef[..., :1])
        return ac * self.scale

    def attend_masked(self, scores: Tensor, hidden: Tensor | None, v: Tensor) -> Tensor:
        if hidden is not None:  # (B, 1, Tq, S) float 0/1
            scores = scores - BIG * hidden
        weights = nn.functional.dropout(torch.softmax(scores, dim=-1), p=self.dropout,
                                        training=self.training)
        return weights @ v  # (B, H, Tq, hd)

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask, position=None,
                cache=None, state=None) -> Tensor:
        P = state.query_stream if state is not None else 0
        h_in, g_in = (x[:, :x.shape[1] - P], x[:, x.shape[1] - P:]) if P else (x, None)
        B, T, _ = h_in.shape
        mem = state.next_memory() if state is not None else None
        cat = torch.cat([mem.to(x.dtype), h_in], dim=1) if mem is not None else h_in
        M = cat.shape[1] - T
        if state is not None and self.mem_len > 0:
            state.new_mems.append(h_in[:, -self.mem_len:].detach() if mem is None
                                  else cat[:, -self.mem_len:].detach())
        inputs = state.inputs if state is not None else {}
        k = self.split(self.k_proj(cat), self.heads)  # (B, H, M+T, hd)
        v = self.split(self.v_proj(cat), self.heads)
        segments = None
        if inputs.get("token_type_ids") is not None:
            types = inputs["token_type_ids"]  # (B, T); memory is segment 0, as HF
            keys = torch.cat([types.new_zeros(B, M), types], dim=1) if M else types
            segments = types[:, :, None] != keys[:, None, :]  # (B, T, M+T)
        # hidden (B, 1, T, M+T): padding keys or perm_mask; the memory is never hidden
        hidden = None
        if mask.key_padding is not None:
            hidden = (~mask.key_padding[:, -T:].bool()).float()[:, None, None, :].expand(B, 1, T, T)
        perm = inputs.get("perm_mask")
        if perm is not None:
            perm = perm.to(x.dtype)[:, None]
            hidden = perm if hidden is None else hidden + perm
        if hidden is not None:
            hidden = (hidden > 0).to(x.dtype)
            if M:
                hidden = torch.cat([hidden.new_zeros(B, 1, T, M), hidden], dim=-1)
        q = self.split(self.q_proj(h_in), self.heads)  # (B, H, T, hd)
        own = None
        if hidden is not None:  # the content stream sees itself
            eye = torch.eye(T, device=x.device, dtype=x.dtype)
            eye = torch.cat([eye.new_zeros(T, M), eye], dim=-1) if M else eye
            own = ((hidden - eye) > 0).to(x.dtype)
        y = self.attend_masked(self.scores(q, k, position, M, segments), own, v)
        out = self.out_proj(y.transpose(1, 2).reshape(B, T, -1))  # (B, T, d)
        if g_in is None:
            return out
        mapping = inputs["target_mapping"].to(x.dtype)  # (B, P, T)
        qg = self.split(self.q_proj(g_in), self.heads)  # (B, H, P, hd)
        qg = torch.einsum("bhmd,bml->bhld", qg, mapping)  # placed at content positions
        yg = self.attend_masked(self.scores(qg, k, position, M, segments), hidden, v)
        yg = torch.einsum("bhld,bml->bhmd", yg, mapping)  # (B, H, P, hd)
        out_g = self.out_proj(yg.transpose(1, 2).reshape(B, P, -1))
        return torch.cat([out, out_g], dim=1)  # (B, T + P, d)
