"""Full softmax attention (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + bias + mask) V, per head.

One parameter layout, several kernels: every implementation is a
:class:`txdsl.sdk.attention.Attention` (projections ``q_proj``, ``k_proj``,
``v_proj``, ``out_proj``, the decode state, positions) that only supplies
``attend``, so all have the same ``state_dict`` and the selection pass can
swap one for another: ``reference`` (here), ``sdpa``, ``flex``.

Grouped-query attention (Ainslie et al. 2023, https://arxiv.org/abs/2305.13245)
and multi-query attention (Shazeer 2019, https://arxiv.org/abs/1911.02150)
come from ``kv_heads`` < ``heads``: query head ``h`` reads key/value head
``h // (heads // kv_heads)``.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from torch import Tensor

from txdsl.sdk import AttentionArgs
from txdsl.sdk.attention import Attention, repeat_kv, softmax_attention


class FullArgs(AttentionArgs):
    """Exact multi-head softmax attention (Vaswani et al. 2017); GQA/MQA via ``kv_heads``."""

    accepts: ClassVar[frozenset[str]] = frozenset({"qk", "bias"})

    out_bias: bool | None = Field(default=None, description="a bias on the output projection; "
                                  "none: as bias (Qwen2: bias: true, out_bias: false)")

    def tp_plan(self, dims, tp):  # every implementation attends head by head
        return self.heads_tp_plan(tp)


class ReferenceAttention(Attention):
    """Exact softmax attention with explicit matmuls (impl ``reference``): what
    ``txdsl verify`` and the fused kernels are compared with."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        groups = self.heads // self.kv_heads
        bias = position.bias if position is not None else None
        return softmax_attention(q, repeat_kv(k, groups), repeat_kv(v, groups), mask=mask,
                                 bias=bias, scale=self.scale, dropout=self.dropout,
                                 training=self.training)
