"""Linformer (Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity",
https://arxiv.org/abs/2006.04768).

Keys and values of length ``n`` are projected along the length to ``k`` rows by
learned matrices ``E, F`` (``n x k``), then ordinary softmax attention runs
over the ``k`` projected rows::

    head = softmax(Q (E^T K)^T / sqrt(d)) (F^T V)        # (T, k) scores, O(T k)

``E`` and ``F`` are sized for the model's ``context`` (the longest sequence); a
shorter sequence uses their first ``n`` rows (the same as zero-padding K and V).
Padded keys are zeroed before the projection, so their content never reaches
a query. One ``E`` and one ``F`` per layer, shared by the heads (the paper's
"headwise sharing"; ``share_kv`` uses ``E`` for both, its "key-value sharing").
A causal Linformer is impossible: every projected row mixes all positions,
future ones included.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from txdsl.sdk import AttentionArgs
from txdsl.sdk.args import ArgError, Dims
from txdsl.sdk.attention import Attention, repeat_kv

from .common import NO_DECODE, fairseq_init, key_weights


class LinformerArgs(AttentionArgs):
    """Linformer (Wang et al. 2020): K and V projected along the length to ``k`` rows."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk"})  # no (T, S) score matrix to bias
    unsupported: ClassVar[dict[str, str]] = {
        "causal": "its length projection mixes future positions into every projected key",
        "decode": NO_DECODE,
    }
    example: ClassVar[dict] = {"k": 4}

    k: PositiveInt = Field(description="projected length: keys and values are projected to k rows")
    share_kv: bool = Field(default=False, description="one projection E for keys and values")

    def check(self, dims: Dims) -> None:
        super().check(dims)
        if dims.context is None:
            raise ArgError("needs the model's context (its fixed maximum length) to size its "
                           "length projections", arg="k", hint="set `context = N` in the model")

    def param_count(self, dims: Dims) -> int:
        return super().param_count(dims) + (1 if self.share_kv else 2) * dims.context * self.k

    def flops_per_token(self, dims: Dims, seq_len: int) -> int:
        hd = self.head_size(dims)
        proj = 2 * AttentionArgs.param_count(self, dims)
        length = 2 * 2 * self.n_kv_heads() * hd * self.k  # E^T K and F^T V, per token
        return proj + length + 2 * 2 * self.heads * hd * self.k


class LinformerAttention(Attention):
    """Softmax attention over ``k`` learned length projections of the keys and values."""

    no_kv_cache = NO_DECODE

    def __init__(self, *, context: int, k: int, share_kv: bool, **base):
        super().__init__(**base)
        self.context = context
        self.E = nn.Parameter(torch.randn(context, k) / context ** 0.5)  # (n, k)
        self.F = None if share_kv else nn.Parameter(torch.randn(context, k) / context ** 0.5)

    def own_init(self) -> None:
        """The Linformer authors' fairseq code's start: Xavier with gain ``1/sqrt 2`` on
        q, k, v and gain 1 on the output projection (``E``, ``F`` keep theirs)."""
        fairseq_init(self, ("q_proj", "k_proj", "v_proj"), ("out_proj",))

    @classmethod
    def from_args(cls, args: LinformerArgs, ctx) -> "LinformerAttention":
        return cls(context=ctx.dims.context, k=args.k, share_kv=args.share_kv,
                   **cls.projections(args, ctx))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        B, S = q.shape[0], k.shape[2]
        if S > self.context:
            raise ValueError(f"linformer: {S} keys, but its projections are sized for "
                             f"context {self.context}")
        w = key_weights(mask, B, S, k.dtype, k.device)  # (B, 1, S, 1)
        if w is not None:
            k, v = k * w, v * w
        E = self.E[:S].to(k.dtype)
        F_ = E if self.F is None else self.F[:S].to(k.dtype)
        k = torch.einsum("bhsd,sk->bhkd", k, E)  # (B, H_kv, k, hd)
        v = torch.einsum("bhsd,sk->bhkd", v, F_)
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)
        scores = torch.einsum("bhtd,bhkd->bhtk", q, k) * self.scale  # (B, H, T, k)
        weights = torch.nn.functional.dropout(torch.softmax(scores.float(), dim=-1),
                                              p=self.dropout, training=self.training)
        return torch.einsum("bhtk,bhkd->bhtd", weights.to(v.dtype), v)  # (B, H, T, hd)
