"""``relative`` attention: exact softmax attention plus a position's score terms.

The attention for ``shaw`` and ``cope`` (positions acting on ``scores``): per head,
with ``a = q k^T * scale`` (masked keys at the dtype's minimum)::

    a' = a + terms.logits(q, a, allowed, scale)     # Shaw: q . w^K * scale; CoPE: q . e(p)
    z  = softmax(a') v + terms.value_term(softmax(a'))   # Shaw's w^V term, else nothing

Without a position it is ``full`` attention (same parameters). It decodes with the
static KV cache (the position's terms read the rows' key positions), supports
grouped-query attention, and serves as cross-attention without positions.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from txdsl.sdk import AttentionArgs
from txdsl.sdk.attention import Attention, masked_fill_value, repeat_kv


class RelativeArgs(AttentionArgs):
    """Exact softmax attention taking the score (and value) terms of a relative
    position: ``shaw`` (Shaw et al. 2018, https://arxiv.org/abs/1803.02155) or ``cope``
    (Golovneva et al. 2024, https://arxiv.org/abs/2405.18719); ``full`` without one."""

    accepts: ClassVar[frozenset[str]] = frozenset({"scores"})
    positions: ClassVar[frozenset[str]] = frozenset({"shaw", "cope"})
    position_note: ClassVar[str] = "of those: shaw, cope"


class RelativeAttention(Attention):
    def attend(self, q: Tensor, k: Tensor, v: Tensor, *, mask, position, state) -> Tensor:
        groups = self.heads // self.kv_heads
        k, v = repeat_kv(k, groups), repeat_kv(v, groups)  # (B, H, S, hd)
        T, S, dtype = q.shape[2], k.shape[2], q.dtype
        work = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
        q, k, v = q.to(work), k.to(work), v.to(work)
        scores = q @ k.transpose(-1, -2) * self.scale  # (B, H, T, S)
        allowed = mask.dense(T, S, device=q.device)  # (B|1, 1, T, S) bool or None
        if allowed is not None:
            scores = scores.masked_fill(~allowed, masked_fill_value(work))
        terms = position.scores if position is not None else None
        if terms is not None:
            if not hasattr(terms, "logits"):
                raise TypeError(f"relative attention takes shaw or cope positions, not "
                                f"{type(terms).__name__}")
            scores = scores + terms.logits(q, scores, allowed, self.scale)
            if allowed is not None:
                scores = scores.masked_fill(~allowed, masked_fill_value(work))
        weights = F.dropout(torch.softmax(scores, dim=-1), p=self.dropout,
                            training=self.training)
        out = weights @ v  # (B, H, T, hd)
        extra = terms.value_term(weights) if terms is not None else None
        if extra is not None:
            out = out + extra
        return out.to(dtype)
