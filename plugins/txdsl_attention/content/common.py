"""Helpers the content-based kinds share: the working dtype and masked, weighted sums."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from txdsl.sdk.attention import masked_fill_value


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """Scores and softmax run in float32 for half-precision inputs (as ``softmax_attention``)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def masked_softmax_sum(scores: Tensor, allowed: Tensor | None, v: Tensor, *, dropout: float,
                       training: bool) -> Tensor:
    """``softmax(scores masked by allowed) @ v``; masked scores become the dtype's finite min,
    so a row with nothing allowed gives uniform weights, not NaN. scores ``(..., T, S)``,
    v ``(..., S, hd)``."""
    if allowed is not None:
        scores = scores.masked_fill(~allowed, masked_fill_value(scores.dtype))
    weights = F.dropout(torch.softmax(scores, dim=-1), p=dropout, training=training)
    return weights @ v  # (..., T, hd)


def query_slots(mask, T: int, S: int, device) -> Tensor:
    """``(T,)`` each query's slot among the ``S`` keys (``mask.q_slots`` or the last ``T``)."""
    if mask.q_slots is not None:
        return mask.q_slots.to(device)
    return torch.arange(S - T, S, device=device)
