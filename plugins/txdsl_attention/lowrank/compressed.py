"""Memory-compressed attention (Liu et al. 2018, "Generating Wikipedia by Summarizing
Long Sequences", https://arxiv.org/abs/1801.10198, sec. 4.2.2).

Keys and values are shortened by a strided convolution (kernel = stride =
``stride``, over all head channels) before softmax attention, so a query
attends to ``ceil(S / stride)`` compressed slots::

    K' = conv_k(K), V' = conv_v(V);  head = softmax(Q K'^T / sqrt d) V'

A length that is not a multiple of ``stride`` is zero-padded at the end.
Padded keys are zeroed before the convolution and a slot whose keys are all
padded is masked (in the causal form and its decode state too), so a row
left-padded by a multiple of ``stride`` reads what it reads alone.

Causal (the paper uses it in a decoder): the keys are cut into blocks of
``stride``; compressed slot ``j`` summarises block ``j`` only, so a query in
block ``b`` sees the slots ``j < b`` (blocks wholly in its past) and, locally,
the raw keys of its own block up to itself, one softmax over both::

    head_t = softmax([q_t K'_{<b}^T, q_t K_{bs..t}^T] / sqrt d) [V'_{<b}; V_{bs..t}]

O(T (T / stride + stride)) scores, and no future key reaches a query; they are
computed by SDPA's fused kernel in chunks of queries, so memory stays linear in
T. Decoding keeps every finished block's slot and the raw keys of the block
being filled (:mod:`.compressed_decode`): ``1 / stride`` of a KV cache.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import AttentionArgs
from txdsl.sdk.args import Dims
from txdsl.sdk.attention import Attention, masked_fill_value, repeat_kv

from .common import key_weights
from .compressed_decode import CompressedState, decode_step

CAUSAL_CHUNK = 1024  # queries per SDPA call in the causal form (rounded down to whole blocks)


class CompressedArgs(AttentionArgs):
    """Memory-compressed attention (Liu et al. 2018): a strided convolution over K and V."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk"})

    stride: PositiveInt = Field(default=3, description="kernel size and stride of the "
                                "convolution shortening K and V (the paper uses 3)")

    def param_count(self, dims: Dims) -> int:
        c = self.n_kv_heads() * self.head_size(dims)
        return super().param_count(dims) + 2 * (c * c * self.stride + c)

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd, c = self.head_size(dims), self.n_kv_heads() * self.head_size(dims)
        proj = 2 * AttentionArgs.param_count(self, dims)
        conv = 2 * 2 * c * c  # two convolutions, stride x c x c per stride tokens
        # causal adds the own block's <= stride raw keys; the bidirectional count is kept
        return proj + conv + 2 * 2 * self.heads * hd * -(-seq_len // self.stride)

    def state_elements(self, dims: Dims, seq_len: int) -> int:
        """Slots ``(N, hd)`` for keys and values (``N = (seq_len - 1) // stride + 2``) and
        their ``N`` real flags, the block being filled ``(stride, hd)`` for both, and its
        ``stride`` real flags."""
        c, s = self.n_kv_heads() * self.head_size(dims), self.stride
        n = (max(seq_len, 1) - 1) // s + 2
        return (2 * c + 1) * n + (2 * c + 1) * s


class CompressedAttention(Attention):
    """Softmax attention over keys and values compressed by a strided convolution."""

    def __init__(self, *, stride: int, **base):
        super().__init__(**base)
        c = self.kv_heads * self.head_dim
        self.stride = stride
        self.conv_k = nn.Conv1d(c, c, stride, stride=stride)
        self.conv_v = nn.Conv1d(c, c, stride, stride=stride)

    @classmethod
    def from_args(cls, args: CompressedArgs, ctx) -> "CompressedAttention":
        return cls(stride=args.stride, **cls.projections(args, ctx))

    def new_state(self, batch: int, capacity: int, *, device=None,
                  dtype: torch.dtype = torch.float32) -> CompressedState:
        return CompressedState(batch, self.kv_heads, self.head_dim, self.stride, capacity,
                               device=device, dtype=dtype)

    def forward(self, x: Tensor, memory: Tensor | None = None, *, mask, position=None,
                cache=None, state=None) -> Tensor:
        if cache is None or memory is not None:
            return super().forward(x, memory, mask=mask, position=position, cache=cache,
                                   state=state)
        B, T, _ = x.shape
        q, k, v = self.self_projections(x, position)  # (B, H, T, hd), (B, H_kv, T, hd)
        y = decode_step(self, q, k, v, mask, cache)  # (B, H, T, hd)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))

    def compress(self, conv: nn.Conv1d, x: Tensor) -> Tensor:
        """``(B, H_kv, S, hd)`` -> ``(B, H_kv, ceil(S / stride), hd)``."""
        B, Hk, S, hd = x.shape
        flat = F.pad(x.transpose(2, 3).reshape(B, Hk * hd, S), (0, -S % self.stride))
        return conv(flat).view(B, Hk, hd, -1).transpose(2, 3)

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        B, S = q.shape[0], k.shape[2]
        w = key_weights(mask, B, S, k.dtype, k.device)  # (B, 1, S, 1)
        if w is not None:
            k, v = k * w, v * w
        groups = self.heads // self.kv_heads
        if mask.causal and not mask.cross:
            return self.causal(q, k, v, w)
        k = repeat_kv(self.compress(self.conv_k, k), groups)  # (B, H, S', hd)
        v = repeat_kv(self.compress(self.conv_v, v), groups)
        bias = None
        if w is not None:  # a slot whose keys are all padded is masked
            real = self.slot_real(w)[:, :, None]  # (B, 1, 1, S')
            bias = torch.zeros(real.shape, dtype=q.dtype, device=q.device)
            bias = bias.masked_fill(~real, masked_fill_value(q.dtype))
        return F.scaled_dot_product_attention(  # (B, H, T, hd), SDPA's fused kernel
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale)

    def slot_real(self, w: Tensor) -> Tensor:
        """``(B, 1, ceil(S / stride))``: which slots hold a real key (``w`` ``(B, 1, S, 1)``)."""
        S = w.shape[2]
        return F.max_pool1d(F.pad(w[:, :, :, 0], (0, -S % self.stride)), self.stride) > 0

    def causal(self, q: Tensor, k: Tensor, v: Tensor, w: Tensor | None) -> Tensor:
        """Earlier blocks compressed, the own block raw and causal; ``k``/``v``
        ``(B, H_kv, T, hd)`` with padded keys zeroed, ``w`` ``(B, 1, T, 1)`` or ``None``.

        Queries go through SDPA in chunks of whole blocks: a chunk's keys are the slots
        that any of its queries may see, then its own raw keys, with an additive mask
        ``(B|1, 1, C, slots + C)``; no score matrix is held (SDPA's fused kernel)."""
        T, s, groups = q.shape[2], self.stride, self.heads // self.kv_heads
        kc = repeat_kv(self.compress(self.conv_k, k), groups)  # (B, H, N, hd)
        vc = repeat_kv(self.compress(self.conv_v, v), groups)
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, T, hd)
        chunk, fill = s * max(1, CAUSAL_CHUNK // s), masked_fill_value(q.dtype)
        pos = torch.arange(T, device=q.device)
        slot_real = self.slot_real(w)[:, :, None] if w is not None else None  # (B, 1, 1, N)
        out = []
        for t0 in range(0, T, chunk):
            t1 = min(T, t0 + chunk)
            n = (t1 - 1) // s  # slots 0 .. n-1: those of the blocks before the last query's
            qt = pos[t0:t1, None]  # (C, 1) the chunk's query positions
            see = torch.cat([torch.arange(n, device=q.device) < qt // s,  # earlier blocks
                             (pos[t0:t1] <= qt) & (pos[t0:t1] // s == qt // s)], dim=1)
            see = see[None, None]  # (1, 1, C, n + C)
            if w is not None:  # padded raw keys and all-padding slots are never seen
                real = w[:, :, None, t0:t1, 0] > 0  # (B, 1, 1, C)
                see = see & torch.cat([slot_real[..., :n], real], dim=-1)
            bias = torch.zeros(see.shape, dtype=q.dtype, device=q.device).masked_fill(~see, fill)
            out.append(F.scaled_dot_product_attention(
                q[:, :, t0:t1], torch.cat([kc[:, :, :n], k[:, :, t0:t1]], dim=2),
                torch.cat([vc[:, :, :n], v[:, :, t0:t1]], dim=2), attn_mask=bias,
                dropout_p=self.dropout if self.training else 0.0, scale=self.scale))
        return out[0] if len(out) == 1 else torch.cat(out, dim=2)  # (B, H, T, hd)
